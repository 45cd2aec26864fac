// Package standin is a small Pulumi resource provider for resources whose outputs are computed once, at creation,
// from their inputs, and never updated in place: every input change replaces the resource. It is what socle's
// stand-ins for pulumi-resource-random and pulumi-resource-tls are built on (controlplane/README.md says why they
// exist): the same resource tokens and property names as the real providers, so the pulumi_random and pulumi_tls
// Python SDKs drive them unchanged.
package standin

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Props are resolved property values: string, float64, bool, []any, map[string]any (secrets unwrapped).
type Props = map[string]any

// Resource describes one resource type.
type Resource struct {
	// Token is the resource type, e.g. "random:index/randomPassword:RandomPassword".
	Token string
	// Defaults are input values applied by Check when the program leaves them unset.
	Defaults Props
	// Outputs are the properties computed by Create (unknown during a preview).
	Outputs []string
	// Secrets are the properties always returned as secrets (inputs or outputs).
	Secrets []string
	// Check (optional) returns the messages of invalid inputs (called when all inputs are known).
	Check func(in Props) []string
	// Create computes the Outputs from the inputs.
	Create func(in Props) (id string, out Props, err error)
	// Expired (optional) names properties that force a replacement at Diff time (a certificate due for renewal).
	Expired func(state Props) []string
}

// Provider serves a set of resources under a package name and version.
type Provider struct {
	pulumirpc.UnimplementedResourceProviderServer
	Name      string
	Version   string
	Resources []*Resource
	byToken   map[string]*Resource
}

// Main runs the provider as a Pulumi plugin.
func (p *Provider) Main() error {
	p.byToken = map[string]*Resource{}
	for _, r := range p.Resources {
		p.byToken[r.Token] = r
	}
	return provider.Main(p.Name, func(*provider.HostClient) (pulumirpc.ResourceProviderServer, error) { return p, nil })
}

func (p *Provider) resource(urn string) (*Resource, error) {
	typ := string(resource.URN(urn).Type())
	if r, ok := p.byToken[typ]; ok {
		return r, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "%s (socle stand-in) does not implement resource type %s", p.Name, typ)
}

var (
	keep  = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, SkipNulls: true}
	plain = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: false, SkipNulls: true}
)

func unmarshal(s *structpb.Struct, opts plugin.MarshalOptions) (resource.PropertyMap, error) {
	if s == nil {
		return resource.PropertyMap{}, nil
	}
	return plugin.UnmarshalProperties(s, opts)
}

// resolve turns a property map into Props; ok is false if some value is unknown.
func resolve(m resource.PropertyMap) (Props, bool) {
	known := !m.ContainsUnknowns()
	out := Props{}
	for k, v := range m {
		out[string(k)] = toGo(v)
	}
	return out, known
}

func toGo(v resource.PropertyValue) any {
	switch {
	case v.IsSecret():
		return toGo(v.SecretValue().Element)
	case v.IsArray():
		arr := []any{}
		for _, e := range v.ArrayValue() {
			arr = append(arr, toGo(e))
		}
		return arr
	case v.IsObject():
		obj := map[string]any{}
		for k, e := range v.ObjectValue() {
			obj[string(k)] = toGo(e)
		}
		return obj
	case v.IsComputed() || v.IsOutput():
		return nil
	}
	return v.V
}

func fromGo(v any) resource.PropertyValue {
	switch t := v.(type) {
	case nil:
		return resource.NewNullProperty()
	case string:
		return resource.NewStringProperty(t)
	case bool:
		return resource.NewBoolProperty(t)
	case int:
		return resource.NewNumberProperty(float64(t))
	case float64:
		return resource.NewNumberProperty(t)
	case []string:
		arr := []resource.PropertyValue{}
		for _, e := range t {
			arr = append(arr, resource.NewStringProperty(e))
		}
		return resource.NewArrayProperty(arr)
	case []any:
		arr := []resource.PropertyValue{}
		for _, e := range t {
			arr = append(arr, fromGo(e))
		}
		return resource.NewArrayProperty(arr)
	case map[string]any:
		obj := resource.PropertyMap{}
		for k, e := range t {
			obj[resource.PropertyKey(k)] = fromGo(e)
		}
		return resource.NewObjectProperty(obj)
	}
	panic(fmt.Sprintf("standin: unsupported value %T", v))
}

func (r *Resource) markSecrets(m resource.PropertyMap) {
	for _, k := range r.Secrets {
		if v, ok := m[resource.PropertyKey(k)]; ok && !v.IsSecret() && !v.IsNull() {
			m[resource.PropertyKey(k)] = resource.MakeSecret(v)
		}
	}
}

func (r *Resource) isOutput(k string) bool {
	for _, o := range r.Outputs {
		if o == k {
			return true
		}
	}
	return false
}

func (p *Provider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: p.Version}, nil
}

func (p *Provider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	resources := map[string]any{}
	for _, r := range p.Resources {
		resources[r.Token] = map[string]any{"description": "socle stand-in", "properties": map[string]any{}}
	}
	schema, err := json.Marshal(map[string]any{"name": p.Name, "version": p.Version, "resources": resources})
	return &pulumirpc.GetSchemaResponse{Schema: string(schema)}, err
}

func (p *Provider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *Provider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *Provider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true}, nil
}

func (p *Provider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (p *Provider) GetMapping(context.Context, *pulumirpc.GetMappingRequest) (*pulumirpc.GetMappingResponse, error) {
	return &pulumirpc.GetMappingResponse{}, nil
}

func (p *Provider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	r, err := p.resource(req.GetUrn())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews(), keep)
	if err != nil {
		return nil, err
	}
	for k, v := range r.Defaults {
		if _, ok := news[resource.PropertyKey(k)]; !ok {
			news[resource.PropertyKey(k)] = fromGo(v)
		}
	}
	var failures []*pulumirpc.CheckFailure
	if in, known := resolve(news); known && r.Check != nil {
		for _, msg := range r.Check(in) {
			failures = append(failures, &pulumirpc.CheckFailure{Reason: msg})
		}
	}
	inputs, err := plugin.MarshalProperties(news, keep)
	return &pulumirpc.CheckResponse{Inputs: inputs, Failures: failures}, err
}

func (p *Provider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	r, err := p.resource(req.GetUrn())
	if err != nil {
		return nil, err
	}
	olds, err := unmarshal(req.GetOldInputs(), plain)
	if err != nil {
		return nil, err
	}
	if len(olds) == 0 { // state written without inputs: compare with the outputs (a superset)
		if olds, err = unmarshal(req.GetOlds(), plain); err != nil {
			return nil, err
		}
	}
	news, err := unmarshal(req.GetNews(), plain)
	if err != nil {
		return nil, err
	}
	changed := map[string]bool{}
	for k, v := range news {
		if r.isOutput(string(k)) {
			continue
		}
		if o, ok := olds[k]; !ok || v.ContainsUnknowns() || !o.DeepEquals(v) {
			changed[string(k)] = true
		}
	}
	for k := range olds {
		if _, ok := news[k]; !ok && !r.isOutput(string(k)) {
			changed[string(k)] = true
		}
	}
	if r.Expired != nil {
		state, _ := unmarshal(req.GetOlds(), plain)
		st, _ := resolve(state)
		for _, k := range r.Expired(st) {
			changed[k] = true
		}
	}
	if len(changed) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	keys := make([]string, 0, len(changed))
	for k := range changed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_SOME, Replaces: keys, Diffs: keys}, nil
}

func (p *Provider) Create(_ context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	r, err := p.resource(req.GetUrn())
	if err != nil {
		return nil, err
	}
	props, err := unmarshal(req.GetProperties(), keep)
	if err != nil {
		return nil, err
	}
	in, known := resolve(props)
	id := ""
	if req.GetPreview() || !known {
		if !req.GetPreview() {
			return nil, status.Errorf(codes.InvalidArgument, "%s: unknown inputs outside a preview", req.GetUrn())
		}
		for _, k := range r.Outputs {
			props[resource.PropertyKey(k)] = resource.MakeComputed(resource.NewStringProperty(""))
		}
	} else {
		var out Props
		if id, out, err = r.Create(in); err != nil {
			return nil, status.Errorf(codes.Unknown, "%s: %v", resource.URN(req.GetUrn()).Name(), err)
		}
		for k, v := range out {
			props[resource.PropertyKey(k)] = fromGo(v)
		}
	}
	r.markSecrets(props)
	outs, err := plugin.MarshalProperties(props, keep)
	return &pulumirpc.CreateResponse{Id: id, Properties: outs}, err
}

func (p *Provider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	// Nothing lives outside the state: what was created is what there is.
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

func (p *Provider) Update(_ context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	// Only reached when nothing but ignored properties changed: keep the outputs, take the new inputs.
	r, err := p.resource(req.GetUrn())
	if err != nil {
		return nil, err
	}
	olds, err := unmarshal(req.GetOlds(), keep)
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews(), keep)
	if err != nil {
		return nil, err
	}
	for k, v := range news {
		if !r.isOutput(string(k)) {
			olds[k] = v
		}
	}
	r.markSecrets(olds)
	outs, err := plugin.MarshalProperties(olds, keep)
	return &pulumirpc.UpdateResponse{Properties: outs}, err
}

func (p *Provider) Delete(context.Context, *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// Helpers for resource implementations.

func String(in Props, k string) string {
	s, _ := in[k].(string)
	return s
}

func Int(in Props, k string) int {
	f, _ := in[k].(float64)
	return int(f)
}

func Bool(in Props, k string) bool {
	b, _ := in[k].(bool)
	return b
}

func Strings(in Props, k string) []string {
	var out []string
	arr, _ := in[k].([]any)
	for _, e := range arr {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func Object(in Props, k string) Props {
	m, _ := in[k].(map[string]any)
	if m == nil {
		return Props{}
	}
	return m
}

// OneOf reports an invalid value of k, if any, among the allowed ones.
func OneOf(in Props, k string, allowed ...string) []string {
	v := String(in, k)
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return []string{fmt.Sprintf("%s must be one of %s, not %q", k, strings.Join(allowed, ", "), v)}
}
