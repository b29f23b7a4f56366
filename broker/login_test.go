package broker

import (
	"sort"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
)

// TestPasswordCheck: bcrypt runs in a bounded number of slots (a login
// that cannot get one in time is busy, not a CPU hog), a verified
// password is remembered until the users change, and an unknown user is
// refused like a wrong password.
func TestPasswordCheck(t *testing.T) {
	t.Parallel()
	us := NewUsers()
	if err := us.Set("pi", RoleDevice, "pi", []byte("right")); err != nil {
		t.Fatal(err)
	}
	u, _ := us.Lookup("pi")
	p := newPasswordCheck(1, 50*time.Millisecond)
	if r := p.check(u, true, []byte("right")); r != passwordOK {
		t.Fatalf("right password: %v", r)
	}
	if r := p.check(User{}, false, []byte("right")); r != passwordWrong {
		t.Errorf("unknown user: %v", r)
	}
	// Every slot taken (a storm of logins in progress).
	p.slots <- struct{}{}
	if r := p.check(u, true, []byte("right")); r != passwordOK {
		t.Errorf("remembered password with no free slot: %v", r)
	}
	if r := p.check(u, true, []byte("wrong")); r != passwordBusy {
		t.Errorf("wrong password with no free slot: %v, want busy", r)
	}
	<-p.slots
	p.forget()
	p.slots <- struct{}{}
	if r := p.check(u, true, []byte("right")); r != passwordBusy {
		t.Errorf("after forget, with no free slot: %v, want busy", r)
	}
	<-p.slots
}

// TestRefusalsTakeTheSameTime: a login as a user that does not exist is
// refused no faster than one with a wrong password (bcrypt either way),
// so user names cannot be told by timing.
//
// Not parallel: it compares timings, which others running beside it would
// blur.
func TestRefusalsTakeTheSameTime(t *testing.T) {
	us := NewUsers()
	if err := us.Set("pi", RoleDevice, "pi", []byte("right")); err != nil {
		t.Fatal(err)
	}
	b, err := Start(Options{Addr: "127.0.0.1:0", Users: us})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	median := func(user string) time.Duration {
		var ds []time.Duration
		for range 5 {
			start := time.Now()
			if _, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "x", Username: user, Password: "wrong"}); err == nil {
				t.Fatal("login with a wrong password admitted")
			}
			ds = append(ds, time.Since(start))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[2]
	}
	known, unknown := median("pi"), median("nobody")
	t.Logf("refusal of a known user %s, of an unknown one %s", known, unknown)
	if unknown < known/2 {
		t.Errorf("an unknown user is refused in %s, a known one in %s: user names can be enumerated", unknown, known)
	}
}
