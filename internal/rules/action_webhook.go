package rules

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// ActionWebhook posts each outcome as JSON to the rule's webhook URL.
const ActionWebhook = "webhook"

func init() {
	registerAction(ActionKind{Name: ActionWebhook, Check: func(c Config) error {
		u, err := url.Parse(c.Webhook)
		if c.Webhook == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("webhook %q: the webhook action needs an http:// or https:// URL", c.Webhook)
		}
		return nil
	}, New: func(c Config, deps Deps) Action { return webhookAction{c, deps} }})
}

type webhookAction struct {
	c    Config
	deps Deps
}

// webhook posts the outcome, trying again after a network error or a 5xx
// answer with a doubling pause, up to WebhookRetries more times.
func (a webhookAction) Run(ctx context.Context, o Outcome) error {
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

func (a webhookAction) post(ctx context.Context, body []byte) (retry bool, err error) {
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
