package httpapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// TestDashboardSensorTitles: each sensor of the page carries the title of
// its newest reading, numbers or not, so the dashboard lists a sensor it
// cannot chart under its own title rather than one guessed from its name.
func TestDashboardSensorTitles(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	b := store.Batch{Readings: []schema.Reading{
		{Host: "pi-a", Sensor: "ac_connected", Time: at(-10), Title: "Old title", Value: json.RawMessage(`true`)},
		{Host: "pi-b", Sensor: "ac_connected", Time: at(-2), Title: "AC power", Value: json.RawMessage(`false`)},
		{Host: "pi-a", Sensor: "cpu_load", Time: at(-1), Value: json.RawMessage(`0.25`)},
	}}
	if _, err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	srv := serveAPI(t, &Server{Store: st, Now: func() time.Time { return t0 }})
	status, body, _ := getStatus(t, srv.URL+"/api/v1/dashboard/sensors")
	var page DashboardSensors
	if err := json.Unmarshal([]byte(body), &page); status != 200 || err != nil {
		t.Fatalf("sensors: %d %v %.200q", status, err, body)
	}
	got := map[string]string{}
	for _, s := range page.Sensors {
		got[s.Sensor] = s.Title
	}
	for sensor, want := range map[string]string{"ac_connected": "AC power", "cpu_load": ""} {
		if got[sensor] != want {
			t.Errorf("%s: title %q, want %q (from its newest reading)", sensor, got[sensor], want)
		}
	}
}
