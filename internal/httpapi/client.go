package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/rules"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// Client errors.
var (
	// ErrUnreachable is returned (wrapped) when no aggregator answers.
	ErrUnreachable = errors.New("aggregator unreachable")
	// ErrUnauthorized is returned (wrapped) when the server wants an API
	// key and the client has none or a wrong one.
	ErrUnauthorized = errors.New("the aggregator refused the API key")
)

// Client queries a running aggregator; it offers the same Scan and Hosts as
// the store, so commands work against either.
type Client struct {
	// Base is the server URL, e.g. http://127.0.0.1:8080.
	Base string
	HTTP *http.Client
	// APIKey is sent in the X-API-Key header when not empty.
	APIKey string
}

// NewClient returns a client for base.
func NewClient(base string) *Client {
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{Timeout: 0}}
}

func (c *Client) get(ctx context.Context, path string, params url.Values) (*http.Response, error) {
	return c.do(ctx, http.MethodGet, path, params)
}

func (c *Client) do(ctx context.Context, method, path string, params url.Values) (*http.Response, error) {
	return c.send(ctx, method, path, params, nil)
}

// send makes a request with a JSON body (none when body is nil).
func (c *Client) send(ctx context.Context, method, path string, params url.Values, body []byte) (*http.Response, error) {
	return c.sendTyped(ctx, method, path, params, "application/json", body)
}

// sendBody makes a request with a body of contentType.
func (c *Client) sendBody(method, path, contentType string, body []byte) (*http.Response, error) {
	return c.sendTyped(context.Background(), method, path, nil, contentType, body)
}

func (c *Client) sendTyped(ctx context.Context, method, path string, params url.Values, contentType string, body []byte) (*http.Response, error) {
	u := c.Base + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %w", c.Base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if c.APIKey != "" {
		req.Header.Set(APIKeyHeader, c.APIKey)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.Base, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		return nil, fmt.Errorf("%w at %s", ErrUnauthorized, c.Base)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("server: %s", e.Error)
		}
		return nil, fmt.Errorf("server: %s", resp.Status)
	}
	return resp, nil
}

// Scan runs the query on the server and calls fn for each reading as it
// streams in.
func (c *Client) Scan(q store.Query, fn func(*schema.Reading) error) error {
	return c.Query(q, query.Spec{Limit: q.Limit}, fn)
}

// Query runs the query with the processing of spec on the server (where
// aggregation happens, so only results cross the network) and calls fn
// for each result as it streams in.
func (c *Client) Query(q store.Query, spec query.Spec, fn func(*schema.Reading) error) error {
	params := selection(q)
	params.Set("format", "ndjson")
	spec.Values(params)
	resp, err := c.get(context.Background(), "/api/v1/query", params)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return query.DecodeNDJSON(resp.Body, fn)
}

// RuleStats returns the counters of the server's rules.
func (c *Client) RuleStats() ([]rules.Stats, error) {
	var stats []rules.Stats
	return stats, c.getJSON("/api/v1/rules", nil, "rules", &stats)
}

// Hosts returns the server's hosts.
func (c *Client) Hosts() ([]store.Host, error) {
	var hosts []store.Host
	return hosts, c.getJSON("/api/v1/hosts", nil, "hosts", &hosts)
}

// SetHostMeta replaces how host is shown, on the server.
func (c *Client) SetHostMeta(host string, m store.HostMeta) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	resp, err := c.send(context.Background(), http.MethodPut, "/api/v1/hosts/"+url.PathEscape(host), nil, body)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// DeadLetters returns up to limit of the server's dead letters, newest
// first.
func (c *Client) DeadLetters(limit int) ([]store.DeadLetter, error) {
	var dead []store.DeadLetter
	return dead, c.getJSON("/api/v1/deadletters", url.Values{"limit": {fmt.Sprint(limit)}}, "dead letters", &dead)
}

// DeadLetterStats returns how many dead letters the server keeps and
// dropped.
func (c *Client) DeadLetterStats() (store.DeadLetterStats, error) {
	var st store.DeadLetterStats
	return st, c.getJSON("/api/v1/deadletters/stats", nil, "dead-letter counts", &st)
}

// getJSON decodes the JSON answer to a GET of path into v; what names it
// in the error.
func (c *Client) getJSON(path string, params url.Values, what string, v any) error {
	resp, err := c.get(context.Background(), path, params)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}

// selection encodes the selecting part of a query as URL parameters.
func selection(q store.Query) url.Values {
	params := url.Values{}
	if q.Sensor != "" {
		params.Set("sensor", q.Sensor)
	} else {
		params.Set("all", "1")
	}
	for _, h := range q.Hosts {
		params.Add("host", h)
	}
	if !q.Since.IsZero() {
		params.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		params.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	return params
}

// Delete removes the readings q selects on the server and returns how many.
func (c *Client) Delete(q store.Query) (int, error) {
	resp, err := c.do(context.Background(), http.MethodDelete, "/api/v1/readings", selection(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Deleted int `json:"deleted"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("decode delete answer: %w", err)
	}
	return out.Deleted, nil
}

// Backup copies the server's database, consistently, to w.
func (c *Client) Backup(w io.Writer) (int64, error) {
	resp, err := c.get(context.Background(), "/api/v1/backup", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, sum), resp.Body)
	if err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	if want := resp.Header.Get(BackupSizeHeader); want != strconv.FormatInt(n, 10) {
		return n, fmt.Errorf("backup: received %d bytes, the server sends %s", n, want)
	}
	if got, want := hex.EncodeToString(sum.Sum(nil)), resp.Trailer.Get(BackupChecksumHeader); got != want {
		return n, fmt.Errorf("backup: checksum of the %d bytes received is %s, the server's is %q", n, got, want)
	}
	return n, nil
}
