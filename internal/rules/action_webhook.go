package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// ActionWebhook posts each outcome as JSON to the rule's webhook URL.
const ActionWebhook = "webhook"

// Defaults of the webhook action's settings.
const (
	DefaultWebhookTimeout = 10 * time.Second
	DefaultWebhookRetries = 3
)

func init() {
	registerAction(ActionKind{Name: ActionWebhook, Settings: func() ActionSettings {
		return &webhookSettings{Timeout: DefaultWebhookTimeout, Retries: DefaultWebhookRetries}
	}})
}

// webhookSettings are the webhook action's keys of a rule's table.
type webhookSettings struct {
	URL     string        `toml:"webhook"`
	Timeout time.Duration `toml:"webhook_timeout"`
	// Retries is how many more attempts follow a network error or a 5xx
	// answer.
	Retries int `toml:"webhook_retries"`
}

func (s *webhookSettings) Check() error {
	u, err := url.Parse(s.URL)
	if s.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook %q: the webhook action needs an http:// or https:// URL", s.URL)
	}
	if s.Retries < 0 {
		return errors.New("webhook_retries: want a whole number, 0 or more")
	}
	return nil
}

func (s *webhookSettings) New(deps Deps) Action { return webhookAction{*s, deps} }

type webhookAction struct {
	s    webhookSettings
	deps Deps
}

// webhook posts the outcome, trying again after a network error or a 5xx
// answer with a doubling pause, up to Retries more times.
func (a webhookAction) Run(ctx context.Context, o Outcome) error {
	body := payload(o)
	pause := a.deps.RetryPause
	var err error
	for attempt := 0; ; attempt++ {
		var retry bool
		retry, err = a.post(ctx, body)
		if err == nil || !retry || attempt >= a.s.Retries || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
		}
		pause *= 2
	}
	if err != nil {
		return fmt.Errorf("webhook %s: %w", a.s.URL, err)
	}
	return nil
}

func (a webhookAction) post(ctx context.Context, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, a.s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.s.URL, bytes.NewReader(body))
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
