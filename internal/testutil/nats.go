package testutil

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// natsServerBuild builds the NATS server once per test process, from the
// version go.mod pins as a tool: the tests need no install by hand.
var natsServerBuild = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "apd-nats-server-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build nats-server: %v\n%s", err, out)
	}
	return bin, nil
})

// NATSNode is one node of a NATS cluster: client, MQTT and monitoring
// listeners on loopback, JetStream in its own directory.
type NATSNode struct {
	Name                           string
	ClientAddr, MQTTAddr, HTTPAddr string
	tb                             testing.TB
	bin, conf                      string
	Log                            *SyncBuffer
	cmd                            *exec.Cmd
}

// NATSCluster is a NATS cluster with JetStream and the MQTT gateway on
// every node, for one test.
type NATSCluster struct {
	Nodes []*NATSNode
}

// StartNATSCluster starts n nodes clustered on loopback and waits until
// each reports itself healthy (JetStream current, the cluster formed).
// They are killed when the test ends.
func StartNATSCluster(tb testing.TB, n int) *NATSCluster {
	tb.Helper()
	bin, err := natsServerBuild()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	c := &NATSCluster{}
	// Fixed ports: every node must know the others' route addresses
	// before any starts, and a node started again (Start after Kill)
	// must come back where its clients reconnect.
	routes := make([]string, n)
	for i := range n {
		routes[i] = FreeAddr(tb)
	}
	for i := range n {
		node := &NATSNode{Name: fmt.Sprintf("n%d", i+1), ClientAddr: FreeAddr(tb), MQTTAddr: FreeAddr(tb), HTTPAddr: FreeAddr(tb),
			tb: tb, bin: bin, Log: &SyncBuffer{}}
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, fmt.Sprintf("nats-route://%s", r))
			}
		}
		conf := fmt.Sprintf(`server_name: %s
listen: %s
http: %s
jetstream { store_dir: %q }
cluster { name: apd, listen: %s, routes: [%s] }
mqtt { listen: %s, stream_replicas: 3 }
`, node.Name, node.ClientAddr, node.HTTPAddr, filepath.Join(dir, node.Name), routes[i], strings.Join(others, ", "), node.MQTTAddr)
		node.conf = filepath.Join(dir, node.Name+".conf")
		if err := os.WriteFile(node.conf, []byte(conf), 0o644); err != nil {
			tb.Fatal(err)
		}
		c.Nodes = append(c.Nodes, node)
	}
	for _, node := range c.Nodes {
		node.Start()
	}
	for _, node := range c.Nodes {
		node.WaitHealthy(60 * time.Second)
	}
	return c
}

// ClientURLs is the nats:// URL of every node, comma-separated.
func (c *NATSCluster) ClientURLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, "nats://"+n.ClientAddr)
	}
	return strings.Join(urls, ",")
}

// MQTTURLs is the tcp:// MQTT URL of every node, comma-separated.
func (c *NATSCluster) MQTTURLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, "tcp://"+n.MQTTAddr)
	}
	return strings.Join(urls, ",")
}

// Start starts the node's process (again, after Kill).
func (n *NATSNode) Start() {
	n.tb.Helper()
	n.cmd = exec.Command(n.bin, "-c", n.conf)
	n.cmd.Stdout, n.cmd.Stderr = n.Log, n.Log
	if err := n.cmd.Start(); err != nil {
		n.tb.Fatal(err)
	}
	cmd := n.cmd
	n.tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	})
}

// Pid is the node's process id.
func (n *NATSNode) Pid() int { return n.cmd.Process.Pid }

// Kill stops the node with SIGKILL.
func (n *NATSNode) Kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	_ = n.cmd.Wait()
}

// WaitHealthy waits until the node's /healthz answers ok: it serves
// clients and its JetStream is current with the cluster.
func (n *NATSNode) WaitHealthy(timeout time.Duration) {
	n.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTPAddr+"/healthz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			n.tb.Fatalf("NATS node %s not healthy within %s:\n%s", n.Name, timeout, n.Log.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
