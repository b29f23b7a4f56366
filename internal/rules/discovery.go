package rules

import (
	"bytes"
	"fmt"

	"github.com/apd-telemetry/apd/publisher/homeassistant"
	"github.com/apd-telemetry/apd/schema"
)

// HADiscovery has the publish action announce rule outcomes to Home
// Assistant: the first time a rule publishes an outcome for a host, a
// retained binary_sensor config (homeassistant.Rule) on that host's device,
// the one apd-publish's discovery announces its sensors on. Once per rule
// and host while the process runs: the config is retained, so Home
// Assistant's restarts need nothing more.
type HADiscovery struct {
	// Prefix is Home Assistant's discovery prefix; empty means
	// "homeassistant".
	Prefix string
	// Version is apd's, in the configs' origin.
	Version string
}

// announcer is one rule's publisher of its discovery configs; it runs on
// the rule's goroutine only, so it needs no lock.
type announcer struct {
	cfg  HADiscovery
	deps Deps
	done map[string]bool // hosts announced
}

func newAnnouncer(deps Deps) *announcer {
	if deps.HADiscovery == nil {
		return nil
	}
	cfg := *deps.HADiscovery
	if cfg.Prefix == "" {
		cfg.Prefix = schema.DefaultDiscoveryPrefix
	}
	return &announcer{cfg: cfg, deps: deps, done: map[string]bool{}}
}

// announce publishes the config of o's rule on o's host unless it did
// already. Outcomes that are not booleans (a derived rule's values) are
// not announced: a binary_sensor could not show them.
func (a *announcer) announce(o Outcome) error {
	if a == nil || a.done[o.Host] {
		return nil
	}
	if v := bytes.TrimSpace(o.Value); !bytes.Equal(v, []byte("true")) && !bytes.Equal(v, []byte("false")) {
		return nil
	}
	if a.deps.PublishRetained == nil {
		return fmt.Errorf("home assistant discovery: no way to publish retained messages")
	}
	e := homeassistant.Rule(o.Host, o.Rule, a.deps.Topics, a.cfg.Version)
	topic := homeassistant.Topic(a.cfg.Prefix, e.Component, o.Host, o.Rule)
	if err := a.deps.PublishRetained(topic, e.Payload); err != nil {
		return fmt.Errorf("home assistant discovery config %s: %w", topic, err)
	}
	a.done[o.Host] = true // only once it is out: a failure is tried again with the next outcome
	return nil
}
