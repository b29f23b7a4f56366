package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// ReadPassword reads a password file ("" gives no password).
func ReadPassword(file string) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read password file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// MQTTLogin are how an MQTT client of apd logs in to a broker: user name,
// password file, and the CAs it trusts over ssl://. Each command embeds it
// with the config section it reads them from (embed:"" envprefix:
// "APD_<SECTION>_"): [publisher], [aggregator] or [client] username,
// password_file, tls_ca; also $APD_<SECTION>_USERNAME and so on.
type MQTTLogin struct {
	Username     string `help:"Broker user name." env:"USERNAME"`
	PasswordFile string `help:"File holding the broker password." placeholder:"FILE" type:"path" env:"PASSWORD_FILE"`
	TLSCA        string `name:"tls-ca" help:"PEM file of CAs to trust for ssl:// brokers." placeholder:"FILE" type:"path" env:"TLS_CA"`
}

// Password reads the password file ("" gives no password).
func (l MQTTLogin) Password() (string, error) { return ReadPassword(l.PasswordFile) }

// ClientCertFlags are a client certificate for brokers that take one as
// the login (apd broker --tls-client-ca).
type ClientCertFlags struct {
	TLSCert string `name:"tls-cert" help:"Client certificate (PEM) to log in with over ssl://." placeholder:"FILE" type:"path"`
	TLSKey  string `name:"tls-key" help:"Its private key (PEM)." placeholder:"FILE" type:"path"`
}

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
