package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// MaxImportBytes bounds one POST /api/v1/import body; apd import sends
// batches of importBatch readings, a few megabytes each.
const MaxImportBytes = 64 << 20

// importBatch is how many readings one commit of an import holds, here
// and in the client.
const importBatch = 10000

// ImportResult is what POST /api/v1/import stored.
type ImportResult struct {
	Stored     int `json:"stored"`
	Duplicates int `json:"duplicates"`
	Hosts      int `json:"hosts"`
}

// importReadings stores the readings of an NDJSON body as apd import
// does with a file (what apd export writes, host lines too): committed
// as imported readings, beside what the ingester commits, without
// acknowledgements or rules. A reading already stored is counted, not
// stored again. Readings before a malformed line stay stored.
func (s *Server) importReadings(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxImportBytes)
	var res ImportResult
	batch := &store.Batch{Imported: true}
	flush := func() error {
		if len(batch.Readings) == 0 {
			return nil
		}
		cr, err := s.Store.Commit(batch)
		if err != nil {
			return err
		}
		res.Stored += cr.Stored
		res.Duplicates += cr.Duplicates
		batch.Reset()
		return nil
	}
	err := query.DecodeExport(r.Body, func(rd *schema.Reading) error {
		batch.Readings = append(batch.Readings, *rd)
		if len(batch.Readings) >= importBatch {
			return flush()
		}
		return nil
	}, func(m query.HostMetaLine) error {
		res.Hosts++
		return s.Store.SetHostMeta(m.Host, m.Meta)
	})
	if ferr := flush(); ferr != nil {
		s.writeError(w, fmt.Errorf("import: %w", ferr))
		return
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		s.writeError(w, fmt.Errorf("%w: import body beyond %d bytes: send smaller batches (what came before is stored)", errBadRequest, MaxImportBytes))
	case err != nil:
		s.writeError(w, fmt.Errorf("%w: import: %v (what came before is stored)", errBadRequest, err))
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

// Commit stores b's readings on the server as imported readings (POST
// /api/v1/import), so apd import can write to a running aggregator as it
// writes to a file.
func (c *Client) Commit(b *store.Batch) (store.CommitResult, error) {
	var body []byte
	for i := range b.Readings {
		body = b.Readings[i].AppendJSON(body, schema.WithIdentity)
		body = append(body, '\n')
	}
	resp, err := c.sendBody(http.MethodPost, "/api/v1/import", "application/x-ndjson", body)
	if err != nil {
		return store.CommitResult{}, err
	}
	defer resp.Body.Close()
	var res ImportResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return store.CommitResult{}, fmt.Errorf("server: import answer: %w", err)
	}
	return store.CommitResult{Stored: res.Stored, Duplicates: res.Duplicates}, nil
}
