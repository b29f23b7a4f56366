package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// SessionCookie carries a dashboard's proof of the API key: asked once,
// kept where the page's scripts cannot read it (HttpOnly) and sent only
// by the server's own pages (SameSite=Strict).
const SessionCookie = "apd_session"

// sessionToken is what the cookie holds: an HMAC of a fixed label under
// the key, so the key itself is not in the browser, and changing the key
// ends every session.
func (s *Server) sessionToken() string {
	m := hmac.New(sha256.New, s.APIKey)
	m.Write([]byte("apd dashboard session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// keyGiven reports whether r carries the API key: in the header, or for
// reading (GET, HEAD) in the session cookie. Changes (PUT, DELETE) need
// the header, so a cookie alone can never change data.
func (s *Server) keyGiven(r *http.Request) bool {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(APIKeyHeader)), s.APIKey) == 1 {
		return true
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	c, err := r.Cookie(SessionCookie)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.sessionToken())) == 1
}

// openSession checks the key posted as {"key": "..."} and answers with
// the session cookie. Without a key configured there is nothing to open.
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
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: s.sessionToken(), Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	writeJSON(w, http.StatusOK, map[string]bool{"key_required": true})
}

func (s *Server) closeSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	writeJSON(w, http.StatusOK, map[string]string{})
}
