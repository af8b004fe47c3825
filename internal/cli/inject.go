package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/jsonpatch"
	"github.com/weftmesh/weft/internal/manifest"
	"github.com/weftmesh/weft/internal/version"
)

type injectOptions struct {
	manual, ingress, nativeSidecar                bool
	preserveClientAddr                            bool
	skipInbound, skipOutbound, opaquePorts, await string
	values, anchors, controllerNS                 string
}

func newInjectCommand() *cobra.Command {
	var o injectOptions
	cmd := &cobra.Command{
		Use:   "inject SOURCE...",
		Short: "Add the Weft proxy to Kubernetes resources in YAML",
		Long: `Reads Kubernetes resources (files, directories, URLs, or - for standard input; several
documents per stream and Lists are fine) and writes them to standard output with the proxy
added: by default the annotation linkerd.io/inject on each pod template (the proxy injector
then adds the proxy when the pods are created), or with --manual the full injected pod spec.
Namespaces get the annotation too; other resources pass through unchanged. A resource that
cannot be meshed (host network, a proxy already there, automountServiceAccountToken false) is
written unchanged, reported as "failed to inject KIND/NAME: REASON", and the command exits 1.`,
		Example: "  weft inject deployment.yaml | kubectl apply -f -\n  kubectl get deploy -n shop -o yaml | weft inject --skip-outbound-ports 3306 - | kubectl apply -f -",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var values *inject.Values
			if o.manual {
				v, err := inject.LoadValues(o.values, o.anchors, o.controllerNS)
				if err != nil {
					return fmt.Errorf("--manual: %w", err)
				}
				values = &v
			}
			return transform(cmd.Context(), args, cmd.OutOrStdout(), cmd.ErrOrStderr(), cmd.InOrStdin(), "inject", func(d *manifest.Document) (string, error) {
				return injectOne(d, o, values)
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.manual, "manual", false, "write the full injected pod spec instead of the annotation")
	f.BoolVar(&o.ingress, "ingress", false, "inject in ingress mode (linkerd.io/inject: ingress)")
	f.BoolVar(&o.nativeSidecar, "native-sidecar", false, "run the proxy as a native sidecar (a restartable init container)")
	f.StringVar(&o.skipInbound, "skip-inbound-ports", "", "inbound ports and ranges that bypass the proxy")
	f.StringVar(&o.skipOutbound, "skip-outbound-ports", "", "outbound ports and ranges that bypass the proxy")
	f.StringVar(&o.opaquePorts, "opaque-ports", "", "ports and ranges to treat as opaque TCP (no protocol detection)")
	f.StringVar(&o.await, "await", "", "enabled or disabled: hold the app back until the proxy is ready")
	f.BoolVar(&o.preserveClientAddr, "preserve-client-address", false, "Weft's own: the app sees its clients' IPs, not 127.0.0.1 ("+compat.AnnotationPreserveClientAddress+`: "true"; docs/proxy.md)`)
	f.StringVar(&o.values, "values", "", "--manual: the control plane's values (linkerd-config), for the proxy's image and settings")
	f.StringVar(&o.anchors, "trust-anchors-file", "", "--manual: the trust anchors (PEM) the proxy is given")
	f.StringVar(&o.controllerNS, "controller-namespace", compat.DefaultControlPlaneNamespace, "the control plane's namespace")
	return cmd
}

func newUninjectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "uninject SOURCE...",
		Short: "Remove the Weft proxy from Kubernetes resources in YAML",
		Long: `Reads resources like inject and writes them without the proxy: the linkerd-proxy and
linkerd-init containers, their volumes, the linkerd.io/inject annotation and what the
injector wrote (created-by, proxy-version, trust-root-sha256, identity-mode, the
linkerd.io/control-plane-ns, workload-ns and proxy-<kind> labels, and
kubectl.kubernetes.io/default-container when it names the first app container, as the
injector writes it; one naming another container is kept).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return transform(cmd.Context(), args, cmd.OutOrStdout(), cmd.ErrOrStderr(), cmd.InOrStdin(), "uninject", uninjectOne)
		},
	}
}

// transform reads every source, applies fn to each resource (the items of
// Lists included), writes all of them, and reports per resource.
func transform(ctx context.Context, sources []string, out, report io.Writer, stdin io.Reader, verb string, fn func(*manifest.Document) (string, error)) error {
	var docs []*manifest.Document
	for _, src := range sources {
		d, err := readSource(ctx, src, stdin)
		if err != nil {
			return err
		}
		docs = append(docs, d...)
	}
	failed := 0
	var each func(d *manifest.Document)
	each = func(d *manifest.Document) {
		if strings.HasSuffix(d.String("/kind"), "List") {
			if items := d.Get("/items"); items != nil {
				for _, item := range items.Content {
					each(&manifest.Document{Node: item})
				}
			}
			return
		}
		kind, name := d.String("/kind"), d.String("/metadata/name")
		done, err := fn(d)
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(report, "failed to %s %s/%s: %v\n", verb, strings.ToLower(kind), name, err)
		case done != "":
			fmt.Fprintf(report, "%s %q %s\n", strings.ToLower(kind), name, done)
		}
	}
	for _, d := range docs {
		each(d)
	}
	if err := manifest.Write(out, docs); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of the resources could not be %sed", failed, strings.TrimSuffix(verb, "e"))
	}
	return nil
}

func readSource(ctx context.Context, src string, stdin io.Reader) ([]*manifest.Document, error) {
	var r io.Reader
	switch {
	case src == "-":
		r = stdin
	case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("reading %s: %s", src, resp.Status)
		}
		r = resp.Body
	default:
		st, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			var docs []*manifest.Document
			err := filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
				if err != nil || e.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, filepath.Ext(p)) {
					return err
				}
				d, err := readSource(ctx, p, stdin)
				docs = append(docs, d...)
				return err
			})
			return docs, err
		}
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	docs, err := manifest.Read(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return docs, nil
}

// configAnnotations are the overrides the flags ask for.
func (o injectOptions) configAnnotations() map[string]string {
	a := map[string]string{}
	for key, val := range map[string]string{compat.AnnotationSkipInboundPorts: o.skipInbound,
		compat.AnnotationSkipOutboundPorts: o.skipOutbound, compat.AnnotationOpaquePorts: o.opaquePorts,
		compat.AnnotationProxyAwait: o.await} {
		if val != "" {
			a[key] = val
		}
	}
	if o.nativeSidecar {
		a[compat.AnnotationNativeSidecar] = "enabled"
	}
	if o.preserveClientAddr {
		a[compat.AnnotationPreserveClientAddress] = "true"
	}
	return a
}

// injectOne injects one resource: the annotation, or with values (--manual)
// the whole proxy.
func injectOne(d *manifest.Document, o injectOptions, values *inject.Values) (string, error) {
	mode := compat.InjectEnabled
	if o.ingress {
		mode = compat.InjectIngress
	}
	ann := o.configAnnotations()
	ann[compat.AnnotationInject] = mode
	kind := d.String("/kind")
	if kind == "Namespace" {
		return "annotated", d.Apply(annotationOps(d, "", ann))
	}
	if !inject.Supported(kind) {
		return "", nil // passes through
	}
	raw, err := d.JSON()
	if err != nil {
		return "", err
	}
	w, err := inject.ParseWorkload(raw)
	if err != nil {
		return "", err
	}
	if w.PodMeta.Annotations == nil {
		w.PodMeta.Annotations = map[string]string{}
	}
	for k, v := range ann {
		w.PodMeta.Annotations[k] = v
	}
	if r := inject.Decide(w, nil, true); !r.Injectable {
		return "", errors.New(strings.Join(r.Reasons, ", "))
	}
	// The annotations go on the pod (template) in the document as they
	// already are in w, which Patch reads.
	if err := d.Apply(annotationOps(d, inject.TemplatePath(kind), ann)); err != nil || values == nil {
		return "injected", err
	}
	if w.Namespace == "" {
		w.Namespace = "default"
	}
	ops, err := inject.Patch(w, *values, inject.Options{CreatedBy: "weft/cli " + version.Version, Mode: mode})
	if err != nil {
		return "", err
	}
	mops := make([]jsonpatch.Op, len(ops))
	for i, op := range ops {
		mops[i] = jsonpatch.Op{Op: op.Op, Path: op.Path, Value: op.Value}
	}
	return "injected", d.Apply(mops)
}

// annotationOps sets annotations under prefix/metadata, creating the map.
func annotationOps(d *manifest.Document, prefix string, ann map[string]string) []jsonpatch.Op {
	path := prefix + "/metadata/annotations"
	if d.Get(path) == nil {
		var ops []jsonpatch.Op
		if d.Get(prefix+"/metadata") == nil {
			ops = append(ops, jsonpatch.Op{Op: "add", Path: prefix + "/metadata", Value: map[string]any{}})
		}
		return append(ops, jsonpatch.Op{Op: "add", Path: path, Value: ann})
	}
	keys := make([]string, 0, len(ann))
	for k := range ann {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var ops []jsonpatch.Op
	for _, k := range keys {
		ops = append(ops, jsonpatch.Op{Op: "add", Path: path + "/" + strings.ReplaceAll(k, "/", "~1"), Value: ann[k]})
	}
	return ops
}

// uninjectOne removes what inject added (inject.Uninject decides what).
func uninjectOne(d *manifest.Document) (string, error) {
	raw, err := d.JSON()
	if err != nil {
		return "", err
	}
	ops, err := inject.Uninject(raw)
	if err != nil || len(ops) == 0 {
		return "", err
	}
	return "uninjected", d.Apply(ops)
}
