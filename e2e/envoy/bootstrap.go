package envoy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"

	// Types the bootstrap's typed_config fields name.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Bootstrap is what the host serves from a static Envoy v3 bootstrap: the plugin,
// clusters and routes as a Config, and the addresses of the HTTP and admin listeners.
type Bootstrap struct {
	Config Config
	Listen string // the listener's socket_address
	Admin  string // admin.address ("" without an admin listener)
	// WasmFile is the first wasm filter's vm_config.code.local.filename ("" when
	// inline); the code of further wasm filters is read into Config.Filters
	// (and Config.Listeners, but for the first listener's file: see SetModule).
	WasmFile string
	// ListenTLS is the listener's DownstreamTlsContext (nil: plain HTTP): its
	// certificate and, with a validation context, the client certificates it
	// verifies (required with require_client_certificate, else verified when given).
	ListenTLS *tls.Config
	// Listeners are the bootstrap's further listeners, in order, one for each
	// of Config.Listeners (whose code files are read here).
	Listeners []ListenerAddr
}

// ListenerAddr is where a further listener serves: its socket_address and its
// TLS (nil: plain HTTP).
type ListenerAddr struct {
	Name   string
	Listen string
	TLS    *tls.Config
	// FirstCode: the listener's first wasm filter names the first listener's
	// code file (WasmFile), which SetModule supplies.
	FirstCode bool
}

// SetModule supplies the code of WasmFile (read by the caller, or replaced
// by other code) to the first listener's plugin and to every further
// listener's first wasm filter that names the same file.
func (b *Bootstrap) SetModule(mod []byte) {
	b.Config.Module = mod
	for i, l := range b.Listeners {
		if l.FirstCode {
			b.Config.Listeners[i].Module = mod
		}
	}
}

// The bootstrap subset the host serves: for each message, the fields it reads.
// Any other field set is refused with its path, never ignored. Fields marked
// "accepted" change nothing a plugin can observe here (names, the runtime, the
// codec, DNS and protocol options of clusters the host dials itself).
var bootstrapFields = map[protoreflect.FullName][]string{
	"envoy.config.bootstrap.v3.Bootstrap":                 {"node", "admin", "static_resources", "stats_config", "bootstrap_extensions"},
	"envoy.config.core.v3.TypedExtensionConfig":           {"name", "typed_config"},
	"envoy.extensions.wasm.v3.WasmService":                {"config", "singleton"},
	"envoy.config.core.v3.Node":                           {"id", "cluster", "metadata"},
	"envoy.config.bootstrap.v3.Admin":                     {"address"},
	"envoy.config.core.v3.Address":                        {"socket_address"},
	"envoy.config.core.v3.SocketAddress":                  {"address", "port_value"},
	"envoy.config.metrics.v3.StatsConfig":                 {"stats_tags"},
	"envoy.config.metrics.v3.TagSpecifier":                {"tag_name", "regex"},
	"envoy.config.bootstrap.v3.Bootstrap.StaticResources": {"listeners", "clusters"},
	"envoy.config.listener.v3.Listener":                   {"name", "address", "filter_chains"},
	"envoy.config.listener.v3.FilterChain":                {"filters", "transport_socket"},
	"envoy.config.listener.v3.Filter":                     {"name", "typed_config"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": {
		"stat_prefix", "codec_type", "route_config", "http_filters", "stream_idle_timeout",
		"normalize_path", "merge_slashes", "path_with_escaped_slashes_action"},
	"envoy.config.route.v3.RouteConfiguration":                                                    {"name", "virtual_hosts"},
	"envoy.config.route.v3.VirtualHost":                                                           {"name", "domains", "routes"},
	"envoy.config.route.v3.Route":                                                                 {"name", "match", "route", "direct_response", "metadata"},
	"envoy.config.route.v3.RouteMatch":                                                            {"prefix", "path", "safe_regex"},
	"envoy.type.matcher.v3.RegexMatcher":                                                          {"regex", "google_re2"},
	"envoy.type.matcher.v3.RegexMatcher.GoogleRE2":                                                {},
	"envoy.config.route.v3.RouteAction":                                                           {"cluster", "timeout", "auto_host_rewrite"},
	"envoy.config.route.v3.DirectResponseAction":                                                  {"status", "body"},
	"envoy.config.core.v3.DataSource":                                                             {"inline_string", "inline_bytes", "filename"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter":                      {"name", "typed_config"},
	"envoy.extensions.filters.http.wasm.v3.Wasm":                                                  {"config"},
	"envoy.extensions.wasm.v3.PluginConfig":                                                       {"name", "root_id", "vm_config", "configuration", "fail_open"},
	"envoy.extensions.wasm.v3.VmConfig":                                                           {"vm_id", "runtime", "code", "configuration", "environment_variables"},
	"envoy.config.core.v3.AsyncDataSource":                                                        {"local"},
	"envoy.extensions.wasm.v3.EnvironmentVariables":                                               {"host_env_keys", "key_values"},
	"envoy.extensions.filters.http.router.v3.Router":                                              {},
	"envoy.config.cluster.v3.Cluster":                                                             {"name", "type", "connect_timeout", "load_assignment", "dns_lookup_family", "typed_extension_protocol_options", "transport_socket"},
	"envoy.config.endpoint.v3.ClusterLoadAssignment":                                              {"cluster_name", "endpoints"},
	"envoy.config.endpoint.v3.LocalityLbEndpoints":                                                {"lb_endpoints"},
	"envoy.config.endpoint.v3.LbEndpoint":                                                         {"endpoint"},
	"envoy.config.endpoint.v3.Endpoint":                                                           {"address"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":                                      {"explicit_http_config", "auto_config", "upstream_http_protocol_options"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig":                   {"http_protocol_options", "http2_protocol_options"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.AutoHttpConfig":                       {"http_protocol_options", "http2_protocol_options"},
	"envoy.config.core.v3.Http1ProtocolOptions":                                                   {},
	"envoy.config.core.v3.Http2ProtocolOptions":                                                   {},
	"envoy.config.core.v3.UpstreamHttpProtocolOptions":                                            {"auto_sni", "auto_san_validation"},
	"envoy.config.core.v3.TransportSocket":                                                        {"name", "typed_config"},
	"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext":                                {"sni", "common_tls_context"},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext":                                  {"alpn_protocols", "validation_context", "tls_certificates"},
	"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext":                              {"common_tls_context", "require_client_certificate"},
	"envoy.extensions.transport_sockets.tls.v3.TlsCertificate":                                    {"certificate_chain", "private_key"},
	"envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext":                      {"trusted_ca"},
	"envoy.config.core.v3.Metadata":                                                               {"filter_metadata"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.CodecType": {},
}

// opaque fields are taken whole: their content is the plugin's or Envoy's
// metadata, not configuration of the host.
var opaqueFields = map[string]bool{
	"envoy.config.core.v3.Metadata.filter_metadata":       true,
	"envoy.extensions.wasm.v3.PluginConfig.configuration": true,
	"envoy.extensions.wasm.v3.VmConfig.configuration":     true,
}

// checkFields refuses any field outside bootstrapFields, naming its path.
func checkFields(m protoreflect.Message, path string) error {
	name := m.Descriptor().FullName()
	if strings.HasPrefix(string(name), "google.protobuf.") {
		return nil // durations, wrappers, structs: values
	}
	allowed, ok := bootstrapFields[name]
	if !ok {
		return fmt.Errorf("%s: %s is not supported", path, name)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := string(fd.Name())
		if path != "" {
			p = path + "." + p
		}
		if !contains(allowed, string(fd.Name())) {
			err = fmt.Errorf("%s: not supported", p)
			return false
		}
		if opaqueFields[string(fd.FullName())] {
			return true
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = checkMessage(l.Get(i).Message(), p+"["+strconv.Itoa(i)+"]")
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = checkMessage(mv.Message(), p+"["+k.String()+"]")
				return err == nil
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			err = checkMessage(v.Message(), p)
		}
		return err == nil
	})
	return err
}

// checkMessage checks a message, unpacking an Any into its type first.
func checkMessage(m protoreflect.Message, path string) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return checkFields(inner.ProtoReflect(), path)
	}
	return checkFields(m, path)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// LoadBootstrap reads a static Envoy v3 bootstrap (YAML or JSON) with go-control-plane's
// types and returns what the host serves from it: one listener with an
// http_connection_manager (its route_config, one envoy.filters.http.wasm filter and
// the router), static clusters of one endpoint each (plain, or TLS with
// UpstreamTlsContext), stats_config.stats_tags, node id/cluster/metadata and the
// admin address. Relative file names are read from dir. Anything else set in the
// bootstrap is refused with the field's path.
func LoadBootstrap(data []byte, dir string) (*Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("bootstrap: rejected by Envoy's validation: %w", err)
	}
	if err := checkFields(b.ProtoReflect(), ""); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	file := func(name string) string {
		if filepath.IsAbs(name) {
			return name
		}
		return filepath.Join(dir, name)
	}
	out := &Bootstrap{}
	cfg := &out.Config
	cfg.Clusters = map[string]string{}

	if a := b.GetAdmin().GetAddress().GetSocketAddress(); a != nil {
		out.Admin = net.JoinHostPort(a.GetAddress(), strconv.Itoa(int(a.GetPortValue())))
	}
	if n := b.GetNode(); n != nil {
		cfg.NodeID, cfg.NodeCluster = n.GetId(), n.GetCluster()
		if n.GetMetadata() != nil {
			md, err := proto.Marshal(n.GetMetadata())
			if err != nil {
				return nil, fmt.Errorf("bootstrap: node.metadata: %w", err)
			}
			cfg.NodeMetadata = md
		}
	}
	for _, t := range b.GetStatsConfig().GetStatsTags() {
		cfg.StatsTags = append(cfg.StatsTags, StatsTag{Name: t.GetTagName(), Regex: t.GetRegex()})
	}

	for i, c := range b.GetStaticResources().GetClusters() {
		if err := loadCluster(cfg, c, fmt.Sprintf("static_resources.clusters[%d]", i), file); err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}

	// Every listener is served, each with its own connection manager; their
	// wasm filters share VMs by VM key and data and queues by vm_id across
	// listeners (see Config.Listeners).
	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) == 0 {
		return nil, errors.New("bootstrap: static_resources.listeners: want at least one listener")
	}
	seen := map[string]string{}
	for i, l := range listeners {
		lw := fmt.Sprintf("static_resources.listeners[%d]", i)
		one := &Bootstrap{Config: Config{Clusters: cfg.Clusters}}
		addr, err := loadListener(one, l, lw, file)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		if prev, dup := seen[addr]; dup {
			return nil, fmt.Errorf("bootstrap: %s.address: %s is already %s's", lw, addr, prev)
		}
		if !strings.HasSuffix(addr, ":0") { // port 0 binds a free port each time
			seen[addr] = lw
		}
		if i == 0 {
			c := one.Config
			cfg.Module, cfg.PluginName, cfg.RootID, cfg.VMID = c.Module, c.PluginName, c.RootID, c.VMID
			cfg.PluginConfig, cfg.VMConfig, cfg.Env, cfg.FailOpen, cfg.NoPlugin = c.PluginConfig, c.VMConfig, c.Env, c.FailOpen, c.NoPlugin
			cfg.Filters, cfg.VirtualHosts, cfg.Paths, cfg.StreamIdleTimeout = c.Filters, c.VirtualHosts, c.Paths, c.StreamIdleTimeout
			out.Listen, out.ListenTLS, out.WasmFile = addr, one.ListenTLS, one.WasmFile
			continue
		}
		c := one.Config
		first := one.WasmFile != "" && one.WasmFile == out.WasmFile
		if one.WasmFile != "" && !first {
			if c.Module, err = os.ReadFile(one.WasmFile); err != nil {
				return nil, fmt.Errorf("bootstrap: %s: the first wasm filter's vm_config.code.local.filename: %w", lw, err)
			}
		}
		cfg.Listeners = append(cfg.Listeners, Listener{
			Name: l.GetName(), VirtualHosts: c.VirtualHosts, Paths: c.Paths, StreamIdleTimeout: c.StreamIdleTimeout, NoPlugin: c.NoPlugin,
			Filter: Filter{Module: c.Module, PluginName: c.PluginName, RootID: c.RootID, VMID: c.VMID,
				PluginConfig: c.PluginConfig, VMConfig: c.VMConfig, Env: c.Env, FailOpen: c.FailOpen},
			Filters: c.Filters,
		})
		out.Listeners = append(out.Listeners, ListenerAddr{Name: l.GetName(), Listen: addr, TLS: one.ListenTLS, FirstCode: first})
	}
	// Wasm services (source/extensions/bootstrap/wasm/config.cc): a singleton
	// on the main thread's VM, else one per worker.
	for i, ext := range b.GetBootstrapExtensions() {
		ew := fmt.Sprintf("bootstrap_extensions[%d].typed_config", i)
		var ws wasmv3.WasmService
		if ext.GetTypedConfig().GetTypeUrl() != wasmServiceType {
			return nil, fmt.Errorf("bootstrap: %s: %s is not supported (envoy.extensions.wasm.v3.WasmService)", ew, ext.GetTypedConfig().GetTypeUrl())
		}
		if err := ext.GetTypedConfig().UnmarshalTo(&ws); err != nil {
			return nil, fmt.Errorf("bootstrap: %s: %w", ew, err)
		}
		p, codeFile, err := loadPluginConfig(ws.GetConfig(), ew+".config", file)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		if codeFile != "" {
			if p.Module, err = os.ReadFile(codeFile); err != nil {
				return nil, fmt.Errorf("bootstrap: %s.config.vm_config.code.local.filename: %w", ew, err)
			}
		}
		if cfg.NoPlugin {
			return nil, fmt.Errorf("bootstrap: %s: a wasm service needs a wasm filter in the listener (this host serves plugins of HTTP filters)", ew)
		}
		cfg.Services = append(cfg.Services, Service{Filter: p, Singleton: ws.GetSingleton()})
	}
	return out, nil
}

// loadListener reads one listener (lw is its path) into out: its address (returned),
// TLS, connection manager options, routes and HTTP filters.
func loadListener(out *Bootstrap, l *listenerv3.Listener, lw string, file func(string) string) (string, error) {
	cfg := &out.Config
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return "", fmt.Errorf("%s.address.socket_address: must be set", lw)
	}
	addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
	if len(l.GetFilterChains()) != 1 || len(l.GetFilterChains()[0].GetFilters()) != 1 {
		return "", fmt.Errorf("%s.filter_chains: want one filter chain of one http_connection_manager", lw)
	}
	if ts := l.GetFilterChains()[0].GetTransportSocket(); ts != nil {
		tw := lw + ".filter_chains[0].transport_socket.typed_config"
		var down tlsv3.DownstreamTlsContext
		if err := ts.GetTypedConfig().UnmarshalTo(&down); err != nil {
			return "", fmt.Errorf("%s: want a DownstreamTlsContext: %w", tw, err)
		}
		tc, err := listenerTLS(&down, tw, file)
		if err != nil {
			return "", err
		}
		out.ListenTLS = tc
	}
	fw := lw + ".filter_chains[0].filters[0]"
	var hcm hcmv3.HttpConnectionManager
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		return "", fmt.Errorf("%s.typed_config: want an http_connection_manager: %w", fw, err)
	}
	if d := hcm.GetStreamIdleTimeout(); d != nil {
		cfg.StreamIdleTimeout = d.AsDuration()
		if cfg.StreamIdleTimeout == 0 {
			cfg.StreamIdleTimeout = -1 // 0 disables it in Envoy
		}
	}
	cfg.Paths = PathOptions{Normalize: hcm.GetNormalizePath().GetValue(), MergeSlashes: hcm.GetMergeSlashes()}
	switch hcm.GetPathWithEscapedSlashesAction() {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		cfg.Paths.RejectEscapedSlashes = true
	default:
		return "", fmt.Errorf("%s.typed_config.path_with_escaped_slashes_action: %s is not supported (KEEP_UNCHANGED, REJECT_REQUEST)",
			fw, hcm.GetPathWithEscapedSlashesAction())
	}
	if err := loadRoutes(cfg, hcm.GetRouteConfig(), fw+".typed_config.route_config", file); err != nil {
		return "", err
	}
	if err := loadFilters(out, hcm.GetHttpFilters(), fw+".typed_config.http_filters", file); err != nil {
		return "", err
	}
	return addr, nil
}

func loadCluster(cfg *Config, c *clusterv3.Cluster, where string, file func(string) string) error {
	switch c.GetType() {
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
	default:
		return fmt.Errorf("%s.type: %s is not supported (STATIC, STRICT_DNS, LOGICAL_DNS)", where, c.GetType())
	}
	var addrs []*corev3.SocketAddress
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, e := range le.GetLbEndpoints() {
			addrs = append(addrs, e.GetEndpoint().GetAddress().GetSocketAddress())
		}
	}
	if len(addrs) != 1 || addrs[0] == nil {
		return fmt.Errorf("%s.load_assignment: want exactly one endpoint with a socket_address, got %d", where, len(addrs))
	}
	name := c.GetName()
	if _, dup := cfg.Clusters[name]; dup {
		return fmt.Errorf("%s.name: cluster %q is defined twice", where, name)
	}
	cfg.Clusters[name] = net.JoinHostPort(addrs[0].GetAddress(), strconv.Itoa(int(addrs[0].GetPortValue())))
	if ts := c.GetTransportSocket(); ts != nil {
		var up tlsv3.UpstreamTlsContext
		if err := ts.GetTypedConfig().UnmarshalTo(&up); err != nil {
			return fmt.Errorf("%s.transport_socket.typed_config: want an UpstreamTlsContext: %w", where, err)
		}
		tc := &tls.Config{ServerName: up.GetSni(), NextProtos: nil, MinVersion: tls.VersionTLS12}
		if tc.ServerName == "" {
			tc.ServerName = addrs[0].GetAddress()
		}
		if ca := up.GetCommonTlsContext().GetValidationContext().GetTrustedCa(); ca != nil {
			pem, err := dataSource(ca, file)
			if err != nil {
				return fmt.Errorf("%s.transport_socket.typed_config.common_tls_context.validation_context.trusted_ca: %w", where, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("%s.transport_socket.typed_config.common_tls_context.validation_context.trusted_ca: no PEM certificate", where)
			}
			tc.RootCAs = pool
		}
		if cfg.ClusterTLS == nil {
			cfg.ClusterTLS = map[string]*tls.Config{}
		}
		cfg.ClusterTLS[name] = tc
	}
	return nil
}

// listenerTLS builds a listener's TLS from its DownstreamTlsContext.
func listenerTLS(down *tlsv3.DownstreamTlsContext, where string, file func(string) string) (*tls.Config, error) {
	ctc := down.GetCommonTlsContext()
	certs := ctc.GetTlsCertificates()
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s.common_tls_context.tls_certificates: want exactly one, got %d", where, len(certs))
	}
	chain, err := dataSource(certs[0].GetCertificateChain(), file)
	if err != nil {
		return nil, fmt.Errorf("%s.common_tls_context.tls_certificates[0].certificate_chain: %w", where, err)
	}
	key, err := dataSource(certs[0].GetPrivateKey(), file)
	if err != nil {
		return nil, fmt.Errorf("%s.common_tls_context.tls_certificates[0].private_key: %w", where, err)
	}
	pair, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, fmt.Errorf("%s.common_tls_context.tls_certificates[0]: %w", where, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
		NextProtos: ctc.GetAlpnProtocols()}
	if ca := ctc.GetValidationContext().GetTrustedCa(); ca != nil {
		pem, err := dataSource(ca, file)
		if err != nil {
			return nil, fmt.Errorf("%s.common_tls_context.validation_context.trusted_ca: %w", where, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.common_tls_context.validation_context.trusted_ca: no PEM certificate", where)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	if down.GetRequireClientCertificate().GetValue() {
		if tc.ClientCAs == nil {
			return nil, fmt.Errorf("%s.require_client_certificate: needs common_tls_context.validation_context.trusted_ca", where)
		}
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

func dataSource(ds *corev3.DataSource, file func(string) string) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_Filename:
		return os.ReadFile(file(s.Filename))
	}
	return nil, errors.New("no data")
}

func loadRoutes(cfg *Config, rc *routev3.RouteConfiguration, where string, file func(string) string) error {
	if rc == nil {
		return fmt.Errorf("%s: must be set (rds is not supported)", where)
	}
	for i, vh := range rc.GetVirtualHosts() {
		vw := fmt.Sprintf("%s.virtual_hosts[%d]", where, i)
		out := VirtualHost{Name: vh.GetName(), Domains: vh.GetDomains()}
		for j, r := range vh.GetRoutes() {
			rw := fmt.Sprintf("%s.routes[%d]", vw, j)
			rt := Route{Name: r.GetName()}
			m := r.GetMatch()
			switch p := m.GetPathSpecifier().(type) {
			case *routev3.RouteMatch_Prefix:
				rt.Prefix = p.Prefix
			case *routev3.RouteMatch_Path:
				rt.Path = p.Path
			case *routev3.RouteMatch_SafeRegex:
				rt.Regex = p.SafeRegex.GetRegex()
			default:
				return fmt.Errorf("%s.match: want prefix, path or safe_regex", rw)
			}
			if r.GetMetadata() != nil {
				md, err := proto.Marshal(r.GetMetadata())
				if err != nil {
					return fmt.Errorf("%s.metadata: %w", rw, err)
				}
				rt.Metadata = md
			}
			switch a := r.GetAction().(type) {
			case *routev3.Route_Route:
				if a.Route.GetAutoHostRewrite().GetValue() {
					return fmt.Errorf("%s.route.auto_host_rewrite: true is not supported", rw)
				}
				c, ok := a.Route.GetClusterSpecifier().(*routev3.RouteAction_Cluster)
				if !ok {
					return fmt.Errorf("%s.route: want a cluster", rw)
				}
				rt.Cluster = c.Cluster
				if t := a.Route.GetTimeout(); t != nil {
					d := t.AsDuration()
					rt.Timeout = &d
				}
			case *routev3.Route_DirectResponse:
				rt.Direct = &DirectResponse{Status: int(a.DirectResponse.GetStatus())}
				if body := a.DirectResponse.GetBody(); body != nil {
					data, err := dataSource(body, file)
					if err != nil {
						return fmt.Errorf("%s.direct_response.body: %w", rw, err)
					}
					rt.Direct.Body = data
				}
			default:
				return fmt.Errorf("%s: want route or direct_response", rw)
			}
			out.Routes = append(out.Routes, rt)
		}
		cfg.VirtualHosts = append(cfg.VirtualHosts, out)
	}
	if len(cfg.VirtualHosts) == 0 {
		return fmt.Errorf("%s.virtual_hosts: must not be empty", where)
	}
	return nil
}

const (
	wasmFilterType   = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
	routerFilterType = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	wasmServiceType  = "type.googleapis.com/envoy.extensions.wasm.v3.WasmService"
)

// loadFilters takes the HTTP filter chain: one or more wasm filters, then the
// router last, as Envoy requires of a terminal filter. The first wasm filter is
// the Config's plugin (its code file is left to the caller, see WasmFile); the
// others are Config.Filters, their code read here.
func loadFilters(out *Bootstrap, filters []*hcmv3.HttpFilter, where string, file func(string) string) error {
	cfg := &out.Config
	if len(filters) == 0 || filters[len(filters)-1].GetTypedConfig().GetTypeUrl() != routerFilterType {
		return fmt.Errorf("%s: the last filter must be envoy.filters.http.router", where)
	}
	wasm := 0
	for i, f := range filters[:len(filters)-1] {
		fw := fmt.Sprintf("%s[%d]", where, i)
		if f.GetTypedConfig().GetTypeUrl() != wasmFilterType {
			return fmt.Errorf("%s.typed_config: %s is not supported (envoy.filters.http.wasm and the router)", fw, f.GetTypedConfig().GetTypeUrl())
		}
		wasm++
		p, codeFile, err := loadWasmFilter(f, fw, file)
		if err != nil {
			return err
		}
		if wasm == 1 {
			cfg.Module, cfg.PluginName, cfg.RootID, cfg.VMID = p.Module, p.PluginName, p.RootID, p.VMID
			cfg.PluginConfig, cfg.VMConfig, cfg.Env, cfg.FailOpen = p.PluginConfig, p.VMConfig, p.Env, p.FailOpen
			out.WasmFile = codeFile
			continue
		}
		if codeFile != "" {
			if p.Module, err = os.ReadFile(codeFile); err != nil {
				return fmt.Errorf("%s.typed_config.config.vm_config.code.local.filename: %w", fw, err)
			}
		}
		cfg.Filters = append(cfg.Filters, p)
	}
	if wasm == 0 {
		cfg.NoPlugin = true
	}
	return nil
}

// loadWasmFilter reads one envoy.filters.http.wasm filter: its plugin, and its
// code inline (Module) or as a file name (codeFile).
func loadWasmFilter(f *hcmv3.HttpFilter, fw string, file func(string) string) (p Filter, codeFile string, err error) {
	var w wasmfilterv3.Wasm
	if err := f.GetTypedConfig().UnmarshalTo(&w); err != nil {
		return p, "", fmt.Errorf("%s.typed_config: %w", fw, err)
	}
	return loadPluginConfig(w.GetConfig(), fw+".typed_config.config", file)
}

// loadPluginConfig reads a wasm PluginConfig (cw is its path).
func loadPluginConfig(pc *wasmv3.PluginConfig, cw string, file func(string) string) (p Filter, codeFile string, err error) {
	p.PluginName, p.RootID, p.FailOpen = pc.GetName(), pc.GetRootId(), pc.GetFailOpen()
	if p.PluginConfig, err = anyBytes(pc.GetConfiguration()); err != nil {
		return p, "", fmt.Errorf("%s.configuration: %w", cw, err)
	}
	vm := pc.GetVmConfig()
	if vm == nil {
		return p, "", fmt.Errorf("%s.vm_config: must be set (vm sharing through vm_id in vm_config)", cw)
	}
	p.VMID = vm.GetVmId()
	if p.VMConfig, err = anyBytes(vm.GetConfiguration()); err != nil {
		return p, "", fmt.Errorf("%s.vm_config.configuration: %w", cw, err)
	}
	local := vm.GetCode().GetLocal()
	if local == nil {
		return p, "", fmt.Errorf("%s.vm_config.code.local: must be set (remote code is not supported)", cw)
	}
	if fn, ok := local.GetSpecifier().(*corev3.DataSource_Filename); ok {
		codeFile = file(fn.Filename)
	} else if p.Module, err = dataSource(local, file); err != nil {
		return p, "", fmt.Errorf("%s.vm_config.code.local: %w", cw, err)
	}
	// proxy-wasm's environment: host_env_keys from the proxy's own environment,
	// key_values as given (source/extensions/common/wasm/wasm.cc, EnvironmentVariables).
	if ev := vm.GetEnvironmentVariables(); ev != nil {
		p.Env = map[string]string{}
		for _, k := range ev.GetHostEnvKeys() {
			if v, ok := os.LookupEnv(k); ok {
				p.Env[k] = v
			}
		}
		for k, v := range ev.GetKeyValues() {
			p.Env[k] = v
		}
	}
	return p, codeFile, nil
}

// anyBytes is a wasm configuration as Envoy hands it to the VM: a StringValue's
// string, a BytesValue's bytes (source/extensions/common/wasm/wasm.cc anyToBytes).
// Other types are refused rather than passed in a form the plugin may not expect.
func anyBytes(a *anypb.Any) ([]byte, error) {
	if a == nil {
		return nil, nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	switch v := m.(type) {
	case *wrapperspb.StringValue:
		return []byte(v.GetValue()), nil
	case *wrapperspb.BytesValue:
		return v.GetValue(), nil
	}
	return nil, fmt.Errorf("%s is not supported (google.protobuf.StringValue or BytesValue)", a.GetTypeUrl())
}
