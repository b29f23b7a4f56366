package ingest_test

import (
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, what, 10*time.Second, cond)
}
