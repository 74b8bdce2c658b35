package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
)

// The official Node package `openai` (pinned in e2e/node/package-lock.json)
// against the local mesh: e2e/node/clients.mjs runs the cases the test
// feeds it and prints what the application saw. node and npm are prerequisites of
// `make test` (README): without them these tests fail, saying so.

var (
	nodeOnce sync.Once
	nodeBin  string
	nodeErr  string
)

// nodeDir is the harness's directory, its dependencies installed (npm ci)
// when node_modules lacks the SDK: a fresh clone has none.
func nodeDir(t *testing.T) (node, dir string) {
	t.Helper()
	dir = filepath.Join(wasmbuild.Root(), "e2e", "node")
	nodeOnce.Do(func() {
		bin, err := exec.LookPath("node")
		if err != nil {
			nodeErr = "node is not installed: the real-client tests need Node.js 20 or later and npm (README, Prerequisites)"
			return
		}
		npm, err := exec.LookPath("npm")
		if err != nil {
			nodeErr = "npm is not installed: the real-client tests install e2e/node's pinned packages with it (README, Prerequisites)"
			return
		}
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
			cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				nodeErr = "npm ci in e2e/node: " + err.Error() + "\n" + string(out)
				return
			}
		}
		nodeBin = bin
	})
	if nodeErr != "" {
		t.Fatal(nodeErr)
	}
	return nodeBin, dir
}

// nodeResult is what one case of clients.mjs printed.
type nodeResult struct {
	OK       bool            `json:"ok"`
	Attempts int             `json:"attempts"`
	Result   json.RawMessage `json:"result"`
	Error    struct {
		Class            string  `json:"class"`
		Message          string  `json:"message"`
		Status           int     `json:"status"`
		Code             *string `json:"code"`
		Type             *string `json:"type"`
		ShouldRetry      *string `json:"shouldRetry"`
		RetryAfterMs     *string `json:"retryAfterMs"`
		ShepherdAttempts *string `json:"shepherdAttempts"`
	} `json:"error"`
}

// nodeSession is one clients.mjs process running cases as they come.
type nodeSession struct {
	stdin io.WriteCloser
	lines chan []byte
}

// startNode starts clients.mjs; it ends with the test.
func startNode(t *testing.T) *nodeSession {
	t.Helper()
	node, dir := nodeDir(t)
	cmd := exec.Command(node, "clients.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	s := &nodeSession{stdin: stdin, lines: make(chan []byte)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			s.lines <- append([]byte(nil), sc.Bytes()...)
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			require.NoError(t, err, "clients.mjs: %s", stderr.String())
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("clients.mjs did not end: %s", stderr.String())
		}
	})
	return s
}

// run runs case name of clients.mjs against base (the SDK's baseURL).
func (s *nodeSession) run(t *testing.T, name, base string) nodeResult {
	t.Helper()
	_, err := io.WriteString(s.stdin, name+" "+base+"\n")
	require.NoError(t, err)
	var line []byte
	select {
	case l, ok := <-s.lines:
		require.True(t, ok, "clients.mjs ended before answering %s", name)
		line = l
	case <-time.After(60 * time.Second):
		t.Fatalf("clients.mjs did not answer %s within 60 s", name)
	}
	var r nodeResult
	require.NoError(t, json.Unmarshal(line, &r), "clients.mjs %s printed %s", name, line)
	return r
}

func str(p *string) string {
	if p == nil {
		return "<none>"
	}
	return *p
}

type nodeUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	InputTokens      int `json:"input_tokens"`
	OutputTokens     int `json:"output_tokens"`
}

// TestNodeOpenAIStreamsAndOperations: through the mesh with the default
// config, the tutorial loop and the SDK's stream helper see what they see
// against the provider itself; Responses (JSON, streamed, the helper) and
// embeddings work and report their usage.
func TestNodeOpenAIStreamsAndOperations(t *testing.T) {
	e := newClientsEnv(t)
	node := startNode(t)
	mesh, direct := e.url+"/v1", "http://"+e.relayAddr+"/v1"

	type chatOut struct {
		Out     string     `json:"out"`
		Content string     `json:"content"`
		Usage   *nodeUsage `json:"usage"`
	}
	for _, name := range []string{"tutorial", "tutorialUsageFalse", "helper", "chat"} {
		t.Run(name, func(t *testing.T) {
			var got, want chatOut
			for _, run := range []struct {
				base string
				out  *chatOut
			}{{direct, &want}, {mesh, &got}} {
				r := node.run(t, name, run.base)
				require.True(t, r.OK, "%s via %s: %s %s", name, run.base, r.Error.Class, r.Error.Message)
				require.Equal(t, 1, r.Attempts)
				require.NoError(t, json.Unmarshal(r.Result, run.out))
			}
			require.Equal(t, want, got, "what the application sees through shepherd is what it sees from the provider")
			if name == "chat" {
				require.Equal(t, fakeText(12), got.Content)
				require.Equal(t, 12, got.Usage.CompletionTokens)
			} else {
				require.Contains(t, got.Out+got.Content, fakeText(12))
			}
		})
	}

	t.Run("helperUsage", func(t *testing.T) {
		r := node.run(t, "helperUsage", mesh)
		require.True(t, r.OK, "%s %s", r.Error.Class, r.Error.Message)
		var got chatOut
		require.NoError(t, json.Unmarshal(r.Result, &got))
		require.Equal(t, fakeText(12)+" ", got.Content)
		require.NotNil(t, got.Usage, "the usage the client asked for")
		require.Equal(t, 12, got.Usage.CompletionTokens)
	})

	for _, name := range []string{"responses", "responsesStream", "responsesHelper"} {
		t.Run(name, func(t *testing.T) {
			r := node.run(t, name, mesh)
			require.True(t, r.OK, "%s %s", r.Error.Class, r.Error.Message)
			var got struct {
				Text  string         `json:"text"`
				Usage *nodeUsage     `json:"usage"`
				Types map[string]int `json:"types"`
			}
			require.NoError(t, json.Unmarshal(r.Result, &got))
			require.Equal(t, fakeText(12), got.Text)
			require.NotNil(t, got.Usage)
			require.Equal(t, 12, got.Usage.OutputTokens)
			require.Positive(t, got.Usage.InputTokens)
			if name == "responsesStream" {
				require.Equal(t, 1, got.Types["response.completed"], "%v", got.Types)
			}
			require.NotContains(t, string(e.relay.Last().Body), "stream_options")
		})
	}

	t.Run("embeddings", func(t *testing.T) {
		r := node.run(t, "embeddings", mesh)
		require.True(t, r.OK, "%s %s", r.Error.Class, r.Error.Message)
		var got struct {
			Count   int       `json:"count"`
			Dims    int       `json:"dims"`
			Numbers bool      `json:"numbers"`
			Model   string    `json:"model"`
			Usage   nodeUsage `json:"usage"`
		}
		require.NoError(t, json.Unmarshal(r.Result, &got))
		require.Equal(t, 2, got.Count)
		require.Positive(t, got.Dims)
		require.True(t, got.Numbers, "the base64 answer decoded to numbers")
		require.Equal(t, "text-embedding-3-small", got.Model)
		require.Equal(t, "text-embedding-3-small", e.relay.Last().Model)
		require.Positive(t, got.Usage.PromptTokens)
	})
}

// TestNodeOpenAIErrorsAndRetries: the Node SDK's error classes and its own
// retry loop on shepherd's local answers: a rate limit is waited out and
// served; a budget, an oversized or invalid body, a failed fallback chain
// and a fail-closed 503 are not retried.
func TestNodeOpenAIErrorsAndRetries(t *testing.T) {
	e := newClientsEnv(t)
	node := startNode(t)
	base := func(prefix string) string { return e.url + prefix + "v1" }

	t.Run("rate limit: retried after retry-after-ms, then served", func(t *testing.T) {
		r := node.run(t, "twice", base("/limited/"))
		require.True(t, r.OK, "%s %s", r.Error.Class, r.Error.Message)
		require.Equal(t, 2, r.Attempts, "one refusal, one success")
	})

	t.Run("budget spent: not retried", func(t *testing.T) {
		e.spendBudget(t)
		r := node.run(t, "chat", base("/budget/"))
		require.False(t, r.OK)
		require.Equal(t, "RateLimitError", r.Error.Class)
		require.Equal(t, http.StatusTooManyRequests, r.Error.Status)
		require.Equal(t, "insufficient_quota", str(r.Error.Code))
		require.Equal(t, "false", str(r.Error.ShouldRetry))
		require.Equal(t, 1, r.Attempts, "the SDK would retry a 429 twice without x-should-retry: false")
	})

	t.Run("body over maxBodyBytes: not retried", func(t *testing.T) {
		r := node.run(t, "large", base("/small/"))
		require.False(t, r.OK)
		require.Equal(t, http.StatusRequestEntityTooLarge, r.Error.Status)
		require.Equal(t, "request_too_large", str(r.Error.Code))
		require.Equal(t, 1, r.Attempts)
	})

	t.Run("invalid JSON: not retried", func(t *testing.T) {
		before := e.relay.Bodies()
		r := node.run(t, "invalidJson", base("/plain/"))
		require.False(t, r.OK)
		require.Equal(t, "BadRequestError", r.Error.Class)
		require.Equal(t, http.StatusBadRequest, r.Error.Status)
		require.Equal(t, "invalid_json", str(r.Error.Code))
		require.Equal(t, "false", str(r.Error.ShouldRetry))
		require.Equal(t, 1, r.Attempts)
		require.Equal(t, before, e.relay.Bodies(), "no body reached the provider")
	})

	t.Run("failed fallback chain: not run again", func(t *testing.T) {
		e.relay.Script(fakeprovider.Fault{Status: 503}, fakeprovider.Fault{Status: 503})
		e.backup.Script(fakeprovider.Fault{Status: 503})
		relay0, backup0 := e.relay.Bodies(), e.backup.Bodies()
		r := node.run(t, "chat", base("/chain/"))
		require.False(t, r.OK)
		require.Equal(t, "InternalServerError", r.Error.Class)
		require.Equal(t, http.StatusServiceUnavailable, r.Error.Status)
		require.Equal(t, "3", str(r.Error.ShepherdAttempts))
		require.Equal(t, 1, r.Attempts)
		require.EqualValues(t, 3, e.relay.Bodies()-relay0+e.backup.Bodies()-backup0, "three upstream calls, not nine")
	})

	// Last: it stops the sidecar.
	t.Run("global limits unavailable on a fail-closed route: not retried", func(t *testing.T) {
		r := node.run(t, "chat", base("/closed/"))
		require.True(t, r.OK, "%s %s", r.Error.Class, r.Error.Message)
		e.sidecar.stop(t)
		r = node.run(t, "chat", base("/closed/"))
		require.False(t, r.OK)
		require.Equal(t, "InternalServerError", r.Error.Class)
		require.Equal(t, http.StatusServiceUnavailable, r.Error.Status)
		require.Equal(t, "ratelimit_unavailable", str(r.Error.Code))
		require.Equal(t, 1, r.Attempts)
	})
}
