package rules

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// actions runs a rule's actions for an outcome.
type actions struct {
	c    Config
	deps Deps
}

// run runs every action in order and reports whether all succeeded. A
// failure is logged and does not stop the actions after it.
func (a actions) run(ctx context.Context, o Outcome) bool {
	ok := true
	for _, name := range a.c.Actions {
		var err error
		switch name {
		case ActionLog:
			a.deps.Logger.Info("rule outcome", "rule", o.Rule, "host", o.Host, "ts", schema.FormatTime(o.Time), "value", string(o.Value),
				"reading", o.Trigger.Human)
		case ActionPublish:
			err = a.publish(o)
		case ActionWebhook:
			err = a.webhook(ctx, o)
		case ActionExec:
			err = a.exec(ctx, o)
		}
		if err != nil {
			ok = false
			a.deps.Logger.Warn("rule action failed", "rule", o.Rule, "action", name, "host", o.Host, "err", err)
		}
	}
	return ok
}

func (a actions) publish(o Outcome) error {
	if a.deps.Publish == nil {
		return fmt.Errorf("no broker to publish to")
	}
	r := o.Reading()
	return a.deps.Publish(a.deps.Topics.Reading(o.Host, o.Rule), r.AppendJSON(nil, schema.WithIdentity))
}

// webhook posts the outcome, trying again after a network error or a 5xx
// answer with a doubling pause, up to WebhookRetries more times.
func (a actions) webhook(ctx context.Context, o Outcome) error {
	body := payload(o)
	pause := a.deps.RetryPause
	var err error
	for attempt := 0; ; attempt++ {
		var retry bool
		retry, err = a.post(ctx, body)
		if err == nil || !retry || attempt >= a.c.WebhookRetries || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
		}
		pause *= 2
	}
	if err != nil {
		return fmt.Errorf("webhook %s: %w", a.c.Webhook, err)
	}
	return nil
}

func (a actions) post(ctx context.Context, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, a.c.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.c.Webhook, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "apd-rules")
	resp, err := a.deps.HTTP.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests, fmt.Errorf("answered %s", resp.Status)
	}
	return false, nil
}

// exec runs the command with the outcome as JSON on stdin.
func (a actions) exec(ctx context.Context, o Outcome) error {
	ctx, cancel := context.WithTimeout(ctx, a.c.ExecTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.c.Exec[0], a.c.Exec[1:]...)
	cmd.Stdin = bytes.NewReader(payload(o))
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("%s: no result within %s", a.c.Exec[0], a.c.ExecTimeout)
		}
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg != "" {
			return fmt.Errorf("%s: %w: %s", a.c.Exec[0], err, msg)
		}
		return fmt.Errorf("%s: %w", a.c.Exec[0], err)
	}
	return nil
}
