package broker

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"runtime"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// passwordCheck verifies passwords so that bcrypt, which is slow on
// purpose, cannot be turned against the broker:
//
//   - Refusals take the same time whether the user exists or not: an
//     unknown user is compared against a hash of the same cost, so user
//     names cannot be enumerated by timing.
//   - At most a few comparisons run at once (MaxLogins, default half the
//     cores), so a storm of wrong passwords queues up instead of taking
//     every core from ingestion; a login that waits longer than LoginWait
//     is refused as busy and the client retries.
//   - A password verified once is remembered (as an HMAC under a key of
//     this process, never the password) until the users change, so a
//     fleet reconnecting after a restart costs one bcrypt per device, not
//     one per connection.
type passwordCheck struct {
	slots chan struct{}
	wait  time.Duration
	key   []byte
	dummy []byte

	mu       sync.Mutex
	verified map[string][]byte // user name + hash → HMAC of the verified password
}

type passwordResult int

const (
	passwordWrong passwordResult = iota
	passwordOK
	passwordBusy
)

// DefaultLoginWait is how long a login waits for a free bcrypt slot.
const DefaultLoginWait = 5 * time.Second

func newPasswordCheck(slots int, wait time.Duration) *passwordCheck {
	if slots <= 0 {
		slots = max(1, runtime.NumCPU()/2)
	}
	if wait <= 0 {
		wait = DefaultLoginWait
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	filler := make([]byte, 16)
	_, _ = rand.Read(filler)
	dummy, _ := bcrypt.GenerateFromPassword(filler, bcrypt.DefaultCost)
	return &passwordCheck{slots: make(chan struct{}, slots), wait: wait, key: key, dummy: dummy, verified: map[string][]byte{}}
}

func (p *passwordCheck) mac(password []byte) []byte {
	m := hmac.New(sha256.New, p.key)
	m.Write(password)
	return m.Sum(nil)
}

// check compares password with u's hash (with a dummy hash when the user
// is not known).
func (p *passwordCheck) check(u User, known bool, password []byte) passwordResult {
	id := u.Name + "\x00" + string(u.Hash)
	sum := p.mac(password)
	if known {
		p.mu.Lock()
		prev, ok := p.verified[id]
		p.mu.Unlock()
		if ok && hmac.Equal(prev, sum) {
			return passwordOK
		}
	}
	timer := time.NewTimer(p.wait)
	defer timer.Stop()
	select {
	case p.slots <- struct{}{}:
	case <-timer.C:
		return passwordBusy
	}
	hash := p.dummy
	if known {
		hash = u.Hash
	}
	err := bcrypt.CompareHashAndPassword(hash, password)
	<-p.slots
	if err != nil || !known {
		return passwordWrong
	}
	p.mu.Lock()
	p.verified[id] = sum
	p.mu.Unlock()
	return passwordOK
}

// forget drops every remembered password (the users changed).
func (p *passwordCheck) forget() {
	p.mu.Lock()
	p.verified = map[string][]byte{}
	p.mu.Unlock()
}
