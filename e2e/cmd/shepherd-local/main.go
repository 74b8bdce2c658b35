// Command shepherd-local runs a proxy-wasm plugin in the Envoy-faithful host of package
// e2e/envoy behind an HTTP/1.1 (and h2c) listener, with named upstream clusters and an
// admin listener serving /stats/prometheus, /ready and /logs. It is the local mesh:
// one Envoy sidecar's worth of behaviour without Envoy.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "shepherd-local:", err)
		os.Exit(1)
	}
}

// kvFlag collects repeatable NAME=VALUE flags.
type kvFlag struct {
	name  string
	pairs [][2]string
}

func (f *kvFlag) String() string { return "" }

func (f *kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", s)
	}
	f.pairs = append(f.pairs, [2]string{k, v})
	return nil
}

// addrs are the bound listen and admin addresses, reported once serving.
type addrs struct {
	Listen, Admin string
	Listeners     []string // the bootstrap's further listeners, in order
}

type options struct {
	cfg          envoy.Config
	listen       string
	admin        string
	pluginConfig string      // the --plugin-config value, re-read on SIGHUP
	envoyConfig  string      // the --envoy-config file, whose plugin configuration SIGHUP re-reads
	listenTLS    *tls.Config // the bootstrap listener's TLS (nil: plain HTTP/1.1 and h2c)
	// more are the bootstrap's further listeners (envoy.Config.Listeners').
	more []envoy.ListenerAddr
}

// reloadPluginConfig reads the plugin configuration again, from the bootstrap or
// --plugin-config.
func (o *options) reloadPluginConfig() ([]byte, error) {
	if o.envoyConfig == "" || o.pluginConfig != "" {
		return fileOrInline(o.pluginConfig)
	}
	data, err := os.ReadFile(o.envoyConfig)
	if err != nil {
		return nil, err
	}
	b, err := envoy.LoadBootstrap(data, filepath.Dir(o.envoyConfig))
	if err != nil {
		return nil, err
	}
	return b.Config.PluginConfig, nil
}

// parseFlags turns the command line into a host configuration; errors name the flag.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("shepherd-local", flag.ContinueOnError)
	fs.SetOutput(stderr)
	wasm := fs.String("wasm", "", "the plugin `FILE` (.wasm)")
	noPlugin := fs.Bool("no-plugin", false, "run no plugin: the router alone, a baseline for what a plugin adds")
	pluginConfig := fs.String("plugin-config", "", "plugin configuration: a `FILE` or inline JSON")
	vmConfig := fs.String("vm-config", "", "VM configuration: a `FILE` or inline JSON")
	pluginName := fs.String("plugin-name", "shepherd", "plugin `NAME` (appears in logs)")
	vmID := fs.String("vm-id", "shepherd", "VM `ID` (shared data and queues are per VM id)")
	rootID := fs.String("root-id", "shepherd", "root context `ID`")
	workers := fs.Int("workers", 2, "worker VMs")
	listen := fs.String("listen", "127.0.0.1:10000", "HTTP listen `ADDR`")
	admin := fs.String("admin", "127.0.0.1:15000", "admin listen `ADDR` (/stats/prometheus, /ready, /logs)")
	defCluster := fs.String("default-cluster", "", "cluster `NAME` for requests no route matches")
	failOpen := fs.Bool("fail-open", false, "let streams continue without the plugin after its VM failed")
	failReload := fs.Bool("fail-reload", false, "replace a failed VM on the next request (Envoy's FAIL_RELOAD)")
	allowStop := fs.Bool("allow-on-headers-stop-iteration", false,
		"Envoy 1.35+ allow_on_headers_stop_iteration: a headers Pause still delivers the body (Istio's WasmPlugin cannot set it)")
	bufLimit := fs.Int("buffer-limit", 1<<20, "bytes a plugin may buffer per body before 413/reset (Envoy's per-connection buffer limit)")
	idle := fs.Duration("stream-idle-timeout", 5*time.Minute, "408 a stream the plugin holds longer than this (Envoy's stream_idle_timeout)")
	routeTimeout := fs.Duration("route-timeout", 15*time.Second,
		"504 a request whose upstream has not finished answering this long after the request ended (Envoy's route timeout; 0: none)")
	legacy := fs.Bool("legacy-wasi", false, "answer WASI poll_oneoff with ENOSYS like Envoy before envoyproxy/envoy#45756")
	logLevel := fs.String("log-level", "info", "wasm log `LEVEL` (trace, debug, info, warn, error, critical)")
	clusters := &kvFlag{name: "cluster"}
	routes := &kvFlag{name: "route"}
	tags := &kvFlag{name: "stats-tag"}
	env := &kvFlag{name: "env"}
	fs.Var(clusters, "cluster", "upstream cluster `NAME=HOST:PORT` (repeatable)")
	fs.Var(routes, "route", "route `AUTHORITY=CLUSTER` (repeatable; host with or without port)")
	fs.Var(tags, "stats-tag", "stats tag `NAME=REGEX` (repeatable; Envoy stats_tags)")
	fs.Var(env, "env", "VM environment variable `NAME=VALUE` (repeatable)")
	envoyConfig := fs.String("envoy-config", "", "a static Envoy v3 bootstrap `FILE` (YAML or JSON) to serve instead of the plugin, cluster and route flags;\n"+
		"--wasm replaces its code file, --plugin-config the wasm filter's configuration, --cluster NAME=HOST:PORT points one of its clusters at a plain address,\n"+
		"--listen/--admin/--workers/--route-timeout apply")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *envoyConfig != "" {
		return fromBootstrap(fs, *envoyConfig, *wasm, *pluginConfig, clusters.pairs)
	}
	var module []byte
	switch {
	case *noPlugin && *wasm != "":
		return nil, errors.New("--no-plugin: leave out --wasm")
	case *noPlugin:
	case *wasm == "":
		return nil, errors.New("--wasm: must name the plugin file (or run --no-plugin)")
	default:
		m, err := os.ReadFile(*wasm)
		if err != nil {
			return nil, fmt.Errorf("--wasm: %w", err)
		}
		module = m
	}
	pc, err := fileOrInline(*pluginConfig)
	if err != nil {
		return nil, fmt.Errorf("--plugin-config: %w", err)
	}
	vc, err := fileOrInline(*vmConfig)
	if err != nil {
		return nil, fmt.Errorf("--vm-config: %w", err)
	}
	if *idle <= 0 {
		return nil, fmt.Errorf("--stream-idle-timeout: must be positive, got %s", *idle)
	}
	if *routeTimeout < 0 {
		return nil, fmt.Errorf("--route-timeout: must not be negative, got %s", *routeTimeout)
	}
	rt := *routeTimeout
	if rt == 0 {
		rt = -1 // none
	}
	if *bufLimit <= 0 {
		return nil, fmt.Errorf("--buffer-limit: must be positive, got %d", *bufLimit)
	}
	if *workers < 1 {
		return nil, fmt.Errorf("--workers: must be at least 1, got %d", *workers)
	}
	if _, err := envoy.ParseLogLevel(*logLevel); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	o := &options{listen: *listen, admin: *admin, pluginConfig: *pluginConfig, cfg: envoy.Config{
		Module: module, NoPlugin: *noPlugin, PluginName: *pluginName, RootID: *rootID, VMID: *vmID,
		PluginConfig: pc, VMConfig: vc, Workers: *workers,
		Clusters: map[string]string{}, Routes: map[string]string{}, DefaultCluster: *defCluster,
		FailOpen: *failOpen, FailReload: *failReload, LegacyWASI: *legacy, LogLevel: *logLevel,
		AllowOnHeadersStopIteration: *allowStop, StreamIdleTimeout: *idle, BufferLimitBytes: *bufLimit,
		RouteTimeout: rt,
		Env:          map[string]string{},
	}}
	for _, p := range clusters.pairs {
		if _, _, err := net.SplitHostPort(p[1]); err != nil {
			return nil, fmt.Errorf("--cluster %s: %w", p[0], err)
		}
		o.cfg.Clusters[p[0]] = p[1]
	}
	for _, p := range routes.pairs {
		if _, ok := o.cfg.Clusters[p[1]]; !ok {
			return nil, fmt.Errorf("--route %s: unknown cluster %q", p[0], p[1])
		}
		o.cfg.Routes[p[0]] = p[1]
	}
	if *defCluster != "" {
		if _, ok := o.cfg.Clusters[*defCluster]; !ok {
			return nil, fmt.Errorf("--default-cluster: unknown cluster %q", *defCluster)
		}
	}
	for _, p := range tags.pairs {
		o.cfg.StatsTags = append(o.cfg.StatsTags, envoy.StatsTag{Name: p[0], Regex: p[1]})
	}
	for _, p := range env.pairs {
		o.cfg.Env[p[0]] = p[1]
	}
	return o, nil
}

// bootstrapOnly are the flags an Envoy bootstrap replaces.
var bootstrapOnly = []string{"no-plugin", "vm-config", "plugin-name", "vm-id", "root-id", "default-cluster",
	"fail-open", "route", "stats-tag", "env", "stream-idle-timeout"}

// fromBootstrap builds the options from --envoy-config: the bootstrap's listener,
// admin, plugin, routes and clusters, with the flags that may adjust them.
func fromBootstrap(fs *flag.FlagSet, path, wasm, pluginConfig string, clusters [][2]string) (*options, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, name := range bootstrapOnly {
		if set[name] {
			return nil, fmt.Errorf("--%s: set by --envoy-config; leave it out", name)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--envoy-config: %w", err)
	}
	b, err := envoy.LoadBootstrap(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("--envoy-config %s: %w", path, err)
	}
	cfg := b.Config
	switch {
	case cfg.NoPlugin && wasm != "":
		return nil, errors.New("--wasm: the bootstrap has no envoy.filters.http.wasm filter")
	case wasm != "":
		mod, err := os.ReadFile(wasm)
		if err != nil {
			return nil, fmt.Errorf("--wasm: %w", err)
		}
		b.SetModule(mod) // every listener whose filter names the first one's code
	case b.WasmFile != "":
		mod, err := os.ReadFile(b.WasmFile)
		if err != nil {
			return nil, fmt.Errorf("--envoy-config %s: vm_config.code.local.filename: %w (or give --wasm)", path, err)
		}
		b.SetModule(mod)
	}
	cfg = b.Config
	for _, p := range clusters {
		if _, ok := cfg.Clusters[p[0]]; !ok {
			return nil, fmt.Errorf("--cluster %s: not a cluster of the bootstrap", p[0])
		}
		if _, _, err := net.SplitHostPort(p[1]); err != nil {
			return nil, fmt.Errorf("--cluster %s: %w", p[0], err)
		}
		cfg.Clusters[p[0]] = p[1]
		delete(cfg.ClusterTLS, p[0]) // a local stand-in speaks plain HTTP
	}
	if pluginConfig != "" {
		if cfg.NoPlugin {
			return nil, errors.New("--plugin-config: the bootstrap has no envoy.filters.http.wasm filter")
		}
		if cfg.PluginConfig, err = fileOrInline(pluginConfig); err != nil {
			return nil, fmt.Errorf("--plugin-config: %w", err)
		}
	}
	o := &options{listen: b.Listen, admin: b.Admin, cfg: cfg, envoyConfig: path, pluginConfig: pluginConfig, listenTLS: b.ListenTLS, more: b.Listeners}
	lookup := func(name string) string { return fs.Lookup(name).Value.String() }
	if set["listen"] {
		o.listen = lookup("listen")
	}
	if set["admin"] || o.admin == "" {
		o.admin = lookup("admin")
	}
	n, _ := strconv.Atoi(lookup("workers"))
	if n < 1 {
		return nil, fmt.Errorf("--workers: must be at least 1, got %d", n)
	}
	o.cfg.Workers = n
	if set["route-timeout"] {
		d, _ := time.ParseDuration(lookup("route-timeout"))
		if d < 0 {
			return nil, fmt.Errorf("--route-timeout: must not be negative, got %s", d)
		}
		o.cfg.RouteTimeout = d
		if d == 0 {
			o.cfg.RouteTimeout = -1
		}
	}
	for _, name := range []string{"fail-reload", "allow-on-headers-stop-iteration", "legacy-wasi"} {
		v, _ := strconv.ParseBool(lookup(name))
		switch name {
		case "fail-reload":
			o.cfg.FailReload = v
		case "allow-on-headers-stop-iteration":
			o.cfg.AllowOnHeadersStopIteration = v
		case "legacy-wasi":
			o.cfg.LegacyWASI = v
		}
	}
	o.cfg.LogLevel = lookup("log-level")
	if _, err := envoy.ParseLogLevel(o.cfg.LogLevel); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	bl, _ := strconv.Atoi(lookup("buffer-limit"))
	o.cfg.BufferLimitBytes = bl
	return o, nil
}

// fileOrInline reads a file, or takes the value itself when it looks like JSON or YAML
// flow text (starts with '{' or '['). Empty means no configuration.
func fileOrInline(v string) ([]byte, error) {
	t := strings.TrimSpace(v)
	if t == "" {
		return nil, nil
	}
	if strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
		return []byte(t), nil
	}
	return os.ReadFile(v)
}

// run starts the host and both listeners and serves until ctx ends; then it shuts
// down gracefully (listeners first, then in-flight requests, then the VMs). SIGHUP
// reloads the plugin configuration.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- addrs) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	o.cfg.LogWriter = stderr
	h, err := envoy.New(ctx, o.cfg)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Close(cctx)
	}()

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	aln, err := net.Listen("tcp", o.admin)
	if err != nil {
		ln.Close()
		return fmt.Errorf("--admin: %w", err)
	}
	srv, ln, scheme := listener(h, ln, o.listenTLS)
	servers := []*http.Server{srv}
	var more []string
	for i, l := range o.more {
		mln, err := net.Listen("tcp", l.Listen)
		if err != nil {
			ln.Close()
			aln.Close()
			for _, s := range servers[1:] {
				s.Close()
			}
			return fmt.Errorf("--envoy-config: static_resources.listeners[%d] %s: %w", i+1, l.Name, err)
		}
		msrv, mln, mscheme := listener(h.Listeners()[i], mln, l.TLS)
		servers = append(servers, msrv)
		more = append(more, mln.Addr().String())
		defer func() { _ = msrv.Close() }()
		go func() { _ = msrv.Serve(mln) }()
		fmt.Fprintf(stdout, "shepherd-local: listener %q on %s://%s\n", l.Name, mscheme, mln.Addr())
	}
	asrv := &http.Server{Handler: adminMux(h), ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- asrv.Serve(aln) }()
	fmt.Fprintf(stdout, "shepherd-local: listening on %s://%s (admin http://%s), %d workers, clusters: %s\n",
		scheme, ln.Addr(), aln.Addr(), o.cfg.Workers, clusterList(o.cfg.Clusters))
	if ready != nil {
		ready <- addrs{Listen: ln.Addr().String(), Admin: aln.Addr().String(), Listeners: more}
	}

	// SIGHUP re-reads --plugin-config (or the bootstrap's) and applies it like an xDS update: on failure the
	// running configuration stays.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			break loop
		case <-hup:
			pc, err := o.reloadPluginConfig()
			if err == nil {
				err = h.Reconfigure(pc)
			}
			if err != nil {
				fmt.Fprintf(stderr, "shepherd-local: reload rejected, keeping the running configuration: %v\n", err)
			} else {
				fmt.Fprintln(stdout, "shepherd-local: plugin configuration reloaded")
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers[1:] {
		_ = s.Shutdown(sctx)
	}
	err = srv.Shutdown(sctx)
	_ = asrv.Shutdown(sctx)
	fmt.Fprintln(stdout, "shepherd-local: stopped")
	return err
}

// listener makes the server of one listener: TLS (HTTP/1.1 and h2) with the
// bootstrap's DownstreamTlsContext, else plain HTTP/1.1 and h2c with request
// headers in wire order.
func listener(h http.Handler, ln net.Listener, listenTLS *tls.Config) (*http.Server, net.Listener, string) {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	scheme := "http"
	if listenTLS != nil {
		// Client certificates are verified as the context says; the plugin
		// reads them as connection.*.
		tc := listenTLS.Clone()
		if len(tc.NextProtos) == 0 {
			tc.NextProtos = []string{"h2", "http/1.1"}
		}
		ln = tls.NewListener(ln, tc)
		protocols.SetHTTP2(true)
		scheme = "https"
	}
	srv := &http.Server{Handler: h, Protocols: protocols, ReadHeaderTimeout: 30 * time.Second}
	if listenTLS == nil {
		// Plain HTTP/1.1 requests reach the plugin with their headers in wire order.
		ln = envoy.WireOrderListener(ln)
		srv.ConnContext = envoy.WireOrderConnContext
	}
	return srv, ln, scheme
}

func clusterList(c map[string]string) string {
	var parts []string
	for k, v := range c {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// adminMux serves the admin endpoints Envoy's admin listener has under the same paths.
func adminMux(h *envoy.Host) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/stats/prometheus", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		h.WritePrometheus(w)
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		for _, s := range h.VMStats() {
			if s.Failed {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "VM %d FAILED\n", s.Index)
				return
			}
		}
		fmt.Fprintln(w, "LIVE")
	})
	mux.HandleFunc("/logs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, l := range h.Logs() {
			fmt.Fprintln(w, l.Text)
		}
	})
	return mux
}
