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
