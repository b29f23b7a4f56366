# apd — build, run, test.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/apd-telemetry/apd/internal/cli.Version=$(VERSION)
STATICCHECK_VERSION := v0.8.2

.PHONY: build run test test-short test-faults lint bench footprint cross fuzz clean vendor-check vendor-update screenshots

## build: the apd and apd-publish binaries in bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/apd ./cmd/apd-publish

## run: apd serve --with-publisher on the embedded defaults (data in ./apd-data)
run: build
	$(BIN)/apd serve --with-publisher

## test: every test, with the race detector (integration tests run real brokers on loopback,
## and the other side's real clients: promtool, Prometheus, node_exporter, the influx CLI, Telegraf built from its module)
# The fault-injection tests time kills and outages against a device's
# clock; beside the CLI tests' demos and browsers on two cores they
# starved, so they run after the rest, alone.
test:
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v '/internal/faults$$')
	$(GO) test -race -count=1 -timeout 30m ./internal/faults/

## test-faults: the fault-injection tests in their long form (kills, a one-minute broker outage, queue overflow)
test-faults:
	APD_FAULTS_SCALE=4 $(GO) test -count=1 -v -timeout 20m ./internal/faults/

test-short:
	$(GO) test -short -count=1 ./...

## lint: gofmt, go vet, staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## bench: the benchmarks reported in docs/benchmarks.md (results in bench.out);
## the VictoriaMetrics comparison needs `apt-get install victoria-metrics` and is skipped without it,
## the dashboard's needs chromium and chromium-driver
bench:
	$(GO) test -run '^$$' -bench IngestEndToEnd -benchtime 1x -count 5 ./internal/bench/ | tee bench.out
	$(GO) test -run '^$$' -bench 'BytesPerReading|ScanAll' -benchtime 1x -count 3 ./internal/bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench '^BenchmarkQueryOneHour$$' -count 5 ./internal/bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench CompareVictoriaMetrics -benchtime 1x -count 3 ./internal/bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench FloodPastSilentSessions -benchtime 1x -count 3 ./broker/ | tee -a bench.out
	APD_FLEET=1000x10 $(GO) test -run '^$$' -bench '^BenchmarkFleet$$' -benchtime 1x -timeout 30m ./internal/bench/ | tee -a bench.out
	APD_FLEET=10000x10 $(GO) test -run '^$$' -bench '^BenchmarkFleet$$' -benchtime 1x -timeout 30m ./internal/bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench ReopenFullHead -benchtime 3x -timeout 30m ./internal/store/boltdb/ | tee -a bench.out
	$(GO) test -run '^$$' -bench ChartWeek -benchtime 3x -count 5 ./internal/bench/ | tee -a bench.out
	APD_VIEW_READINGS=50000000 $(GO) test -run '^$$' -bench SeriesThirtyDays -benchtime 5x -timeout 60m ./internal/bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench DashboardRender -benchtime 7x -timeout 30m ./internal/bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench EnginesTicks -benchtime 1x -timeout 30m ./internal/bench/ | tee -a bench.out
	APD_QUERY_READINGS=50000000 $(GO) test -run '^$$' -bench PostgresQueryOneHour -benchtime 200x -timeout 60m ./internal/bench/ | tee -a bench.out
	APD_FLEET=1000x10 APD_FLEET_STORE=postgres $(GO) test -run '^$$' -bench '^BenchmarkFleet$$' -benchtime 1x -timeout 30m ./internal/bench/ | tee -a bench.out
	APD_FLEET=1000x10 $(GO) test -run '^$$' -bench '^BenchmarkFleetNATS$$' -benchtime 1x -timeout 30m ./internal/bench/ | tee -a bench.out
	$(GO) test -run '^$$' -bench CheckpointWear -benchtime 1x ./internal/store/boltdb/ | tee -a bench.out
	$(GO) test -run '^$$' -bench PromQL -benchtime 5x -count 3 ./internal/promapi/ | tee -a bench.out
	$(GO) test -run '^$$' -bench SDCardWear -benchtime 1x -timeout 2h ./internal/bench/ | tee -a bench.out

## footprint: apd-publish's resident memory and CPU at a 10 s interval over FOOTPRINT (10m) against a real apd serve
FOOTPRINT ?= 10m
footprint:
	APD_FOOTPRINT_DURATION=$(FOOTPRINT) $(GO) test -run '^$$' -bench PublisherFootprint -benchtime 1x -timeout 30m ./internal/bench/ | tee footprint.out

## cross: release binaries for linux/amd64, linux/arm64 and linux/arm (ARMv6, Pi Zero)
cross:
	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linux-amd64/ ./cmd/apd ./cmd/apd-publish
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linux-arm64/ ./cmd/apd ./cmd/apd-publish
	GOOS=linux GOARCH=arm GOARM=6 CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linux-armv6/ ./cmd/apd ./cmd/apd-publish
	@ls -l dist/*/

## vendor-check: the embedded front-end files (uPlot, world-atlas) are byte for byte the releases pinned in internal/dashboard/package.json (needs npm)
vendor-check:
	internal/dashboard/vendor.sh check

## vendor-update: copy in the pinned releases' files after changing internal/dashboard/package.json
vendor-update:
	internal/dashboard/vendor.sh update

## screenshots: the README's pictures (docs/images), made on apd demo by the dashboard tests and TestReadme (needs chromium, chromium-driver, mosquitto-clients)
screenshots:
	APD_SCREENSHOTS=$(CURDIR)/docs/images APD_REQUIRE_BROWSER=1 $(GO) test -count=1 -run 'TestDashboardDemo|TestDashboard$$|TestReadme$$' ./cmd/apd/

## fuzz: the payload decoder's, the chunk codec's and the head rows' fuzz targets, FUZZTIME each (seed corpus in schema/testdata/fuzz)
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./schema -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./internal/store/chunk -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./internal/store/chunk -run '^$$' -fuzz FuzzRows -fuzztime $(FUZZTIME)

clean:
	rm -rf $(BIN) dist bench.out footprint.out
