package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// SessionCookie carries a dashboard's session: asked for with the API key
// once, kept where the page's scripts cannot read it (HttpOnly) and sent
// only by the server's own pages (SameSite=Strict).
const SessionCookie = "apd_session"

// DefaultSessionTTL is how long a dashboard session lasts from its login
// (Server.SessionTTL): a cookie copied off a machine is of use for at
// most this long, and a dashboard asks for the key again after it.
const DefaultSessionTTL = 12 * time.Hour

// DefaultMaxSessions bounds the sessions kept (Server.MaxSessions), about
// 100 bytes each in memory. When a login finds them all taken, the one
// closest to its expiry is ended to make room.
const DefaultMaxSessions = 1024

// sessions are the dashboard sessions open now: a random id per login,
// kept by its SHA-256 (a lookup's timing tells nothing about the ids) with
// its expiry. They live in memory: a restart logs every dashboard out.
type sessions struct {
	mu  sync.Mutex
	exp map[[sha256.Size]byte]time.Time
	max int
}

func newSessions(max int) *sessions {
	return &sessions{exp: map[[sha256.Size]byte]time.Time{}, max: max}
}

// open makes a session lasting until expires and returns its id.
func (ss *sessions) open(now, expires time.Time) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.exp) >= ss.max {
		for k, e := range ss.exp {
			if !now.Before(e) {
				delete(ss.exp, k)
			}
		}
	}
	for len(ss.exp) >= ss.max {
		var oldest [sha256.Size]byte
		first := true
		for k, e := range ss.exp {
			if first || e.Before(ss.exp[oldest]) {
				oldest, first = k, false
			}
		}
		delete(ss.exp, oldest)
	}
	ss.exp[sha256.Sum256([]byte(id))] = expires
	return id, nil
}

// valid reports whether id is an open session at now; an expired one is
// forgotten.
func (ss *sessions) valid(id string, now time.Time) bool {
	k := sha256.Sum256([]byte(id))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	e, ok := ss.exp[k]
	if ok && !now.Before(e) {
		delete(ss.exp, k)
		return false
	}
	return ok
}

// close ends the session id (none: nothing happens).
func (ss *sessions) close(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.exp, sha256.Sum256([]byte(id)))
}

// keyOnly lists what the session cookie never opens, however it is asked
// for: the key itself must be in the header. A backup is the whole
// database, which a browser session has no need to read.
func keyOnly(r *http.Request) bool {
	return r.URL.Path == "/api/v1/backup"
}

// keyGiven reports whether r carries the API key: in the header, or for
// reading (GET, HEAD) through an open session's cookie. Changes (PUT,
// DELETE) and what keyOnly lists need the header, so a cookie alone can
// never change data or take the database away.
func (s *Server) keyGiven(r *http.Request) bool {
	for _, k := range presentedKeys(r) {
		if subtle.ConstantTimeCompare([]byte(k), s.APIKey) == 1 {
			return true
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead || keyOnly(r) {
		return false
	}
	c, err := r.Cookie(SessionCookie)
	return err == nil && s.sessions.valid(c.Value, s.now())
}

// presentedKeys lists what r offers as the API key, in every form the
// clients that talk to apd send one without being taught apd's header:
// Grafana, Prometheus' remote_write and Telegraf send a bearer or token
// credential or Basic auth (the password is the key, the user name is
// not looked at); the InfluxDB 1.x API also takes the password as the
// query parameter p, which is only looked at on its /write and /query.
func presentedKeys(r *http.Request) []string {
	keys := make([]string, 0, 2)
	if k := r.Header.Get(APIKeyHeader); k != "" {
		keys = append(keys, k)
	}
	if _, pass, ok := r.BasicAuth(); ok {
		keys = append(keys, pass)
	} else if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok &&
		(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "Token")) {
		keys = append(keys, strings.TrimSpace(cred))
	}
	if r.URL.Path == "/write" || r.URL.Path == "/query" {
		if p := r.URL.Query().Get("p"); p != "" {
			keys = append(keys, p)
		}
	}
	return keys
}

// openSession checks the key posted as {"key": "..."} and answers with a
// new session's cookie, which expires after the session TTL. Without a
// key configured there is nothing to open.
func (s *Server) openSession(w http.ResponseWriter, r *http.Request) {
	if len(s.APIKey) == 0 {
		writeJSON(w, http.StatusOK, map[string]bool{"key_required": false})
		return
	}
	var body struct {
		Key string `json:"key"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body); err != nil {
		s.writeError(w, fmt.Errorf("%w: want {\"key\": \"...\"}: %v", errBadRequest, err))
		return
	}
	if subtle.ConstantTimeCompare([]byte(body.Key), s.APIKey) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "wrong API key"})
		return
	}
	ttl := s.sessionTTL()
	now := s.now()
	id, err := s.sessions.open(now, now.Add(ttl))
	if err != nil {
		s.writeError(w, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		MaxAge: int(ttl / time.Second), Expires: now.Add(ttl)})
	writeJSON(w, http.StatusOK, map[string]any{"key_required": true, "expires": now.Add(ttl).UTC()})
}

// closeSession ends the session of the cookie sent, on the server as well
// as in the browser: a copy of the cookie kept elsewhere opens nothing
// afterwards.
func (s *Server) closeSession(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		s.sessions.close(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	writeJSON(w, http.StatusOK, map[string]string{})
}

func (s *Server) sessionTTL() time.Duration {
	if s.SessionTTL > 0 {
		return s.SessionTTL
	}
	return DefaultSessionTTL
}
