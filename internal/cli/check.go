package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity/pki"
)

// A check is one line of `weft check`; warn makes its failure a warning.
type check struct {
	desc string
	hint string
	warn bool
	run  func(ctx context.Context) error
}

type checkGroup struct {
	name   string
	checks []check
}

// soon is how close an expiry must be to warn.
const soon = 60 * 24 * time.Hour

func newCheckCommand() *cobra.Command {
	var k kubeFlags
	var pre bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that the control plane (or, with --pre, the cluster) is ready",
		Long: `Runs grouped checks and prints √ or × for each, with a hint on failure: the API is
reachable and recent enough; the control plane's config, CRDs and pods; identity's trust
anchors and issuer (valid, chained, not expiring within 60 days); the injector's webhook
certificate; and the data plane's proxies (ready, on the control plane's version). With --pre,
whether the cluster is ready for weft install. Exits 1 when a check fails (warnings do not).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, d, err := k.clients()
			var groups []checkGroup
			if err != nil {
				groups = []checkGroup{{"kubernetes-api", []check{{desc: "can initialize the client", hint: "check --kubeconfig or $KUBECONFIG",
					run: func(context.Context) error { return err }}}}}
			} else {
				cc := &checker{c: c, d: d, ns: k.namespace}
				groups = cc.groups(pre)
				if !pre && vizInstalled(cmd.Context(), c, vizDefaultNamespace) {
					groups = append(groups, (&vizFlags{kubeconfig: k.kubeconfig, vizNamespace: vizDefaultNamespace}).checkGroup())
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			if !runChecks(ctx, cmd.OutOrStdout(), groups) {
				return errors.New("some checks failed")
			}
			return nil
		},
	}
	k.add(cmd)
	cmd.Flags().BoolVar(&pre, "pre", false, "check the cluster before installing")
	return cmd
}

func runChecks(ctx context.Context, w io.Writer, groups []checkGroup) bool {
	ok := true
	for _, g := range groups {
		fmt.Fprintf(w, "%s\n%s\n", g.name, strings.Repeat("-", len(g.name)))
		for _, c := range g.checks {
			err := c.run(ctx)
			switch {
			case err == nil:
				fmt.Fprintf(w, "√ %s\n", c.desc)
			case c.warn:
				fmt.Fprintf(w, "‼ %s\n    %v\n    hint: %s\n", c.desc, err, c.hint)
			default:
				ok = false
				fmt.Fprintf(w, "× %s\n    %v\n    hint: %s\n", c.desc, err, c.hint)
			}
		}
		fmt.Fprintln(w)
	}
	mark := "√"
	if !ok {
		mark = "×"
	}
	fmt.Fprintf(w, "Status check results are %s\n", mark)
	return ok
}

type checker struct {
	c  kubernetes.Interface
	d  dynamic.Interface
	ns string
}

func (k *checker) groups(pre bool) []checkGroup {
	gs := []checkGroup{
		{"kubernetes-api", []check{{desc: "can query the Kubernetes API", hint: "is the API server reachable from here?", run: func(context.Context) error {
			_, err := k.c.Discovery().ServerVersion()
			return err
		}}}},
		{"kubernetes-version", []check{{desc: "is running the minimum Kubernetes API version (1.29)", hint: "upgrade the cluster", run: k.minVersion}}},
	}
	if pre {
		return append(gs, checkGroup{"pre-kubernetes-setup", []check{
			{desc: "control plane namespace does not already exist", hint: "weft uninstall first, or pick another --linkerd-namespace", run: func(ctx context.Context) error {
				_, err := k.c.CoreV1().Namespaces().Get(ctx, k.ns, metav1.GetOptions{})
				if err == nil {
					return fmt.Errorf("namespace %s exists", k.ns)
				}
				if apierrors.IsNotFound(err) {
					return nil
				}
				return err
			}},
			{desc: "can create cluster-wide resources (roles, webhooks, CRDs)", hint: "install as a cluster administrator", run: k.canCreateClusterResources},
		}})
	}
	return append(gs,
		checkGroup{compat.CheckExistence, []check{
			{desc: "'linkerd-config' config map exists", hint: "weft install | kubectl apply -f -", run: func(ctx context.Context) error {
				_, err := k.c.CoreV1().ConfigMaps(k.ns).Get(ctx, compat.ConfigConfigMap, metav1.GetOptions{})
				return err
			}},
			{desc: "control plane pods are ready", hint: "kubectl -n " + k.ns + " get pods; kubectl -n " + k.ns + " logs deploy/<name>", run: k.controlPlaneReady},
		}},
		checkGroup{compat.CheckConfig, []check{
			{desc: "control plane CustomResourceDefinitions exist", hint: "weft install --crds | kubectl apply -f -", run: k.crdsExist},
		}},
		checkGroup{compat.CheckIdentity, []check{
			{desc: "trust anchors are valid and within their validity period", hint: "see docs/identity.md: rotating the trust anchor", run: func(ctx context.Context) error {
				_, err := k.anchors(ctx, 0)
				return err
			}},
			{desc: "trust anchors are not expiring within 60 days", warn: true, hint: "rotate the trust anchor", run: func(ctx context.Context) error {
				_, err := k.anchors(ctx, soon)
				return err
			}},
			{desc: "issuer certificate is valid, signed by the trust anchors", hint: "re-issue linkerd-identity-issuer from the trust anchor", run: func(ctx context.Context) error {
				return k.issuer(ctx, 0)
			}},
			{desc: "issuer certificate is not expiring within 60 days", warn: true, hint: "rotate the issuer (cert-manager does it by itself)", run: func(ctx context.Context) error {
				return k.issuer(ctx, soon)
			}},
		}},
		checkGroup{compat.CheckWebhooks, []check{
			{desc: "proxy-injector webhook has a valid certificate, trusted by its caBundle", hint: "helm upgrade (or weft install | kubectl apply) regenerates it", run: k.webhookCert},
			{desc: "proxy-injector has a ready endpoint for the API server to call", hint: "until it has, new pods are admitted without a proxy (failurePolicy Ignore); kubectl -n " + k.ns + " get endpointslices", run: k.injectorEndpoints},
		}},
		k.policyGroup(),
		checkGroup{compat.CheckDataPlane, []check{
			{desc: "data plane proxies are ready", hint: "kubectl logs POD -c linkerd-proxy", run: func(ctx context.Context) error { return k.dataPlane(ctx, false) }},
			{desc: "data plane proxies are on the control plane's version", warn: true, hint: "restart the workloads (kubectl rollout restart) to get the new proxy", run: func(ctx context.Context) error { return k.dataPlane(ctx, true) }},
		}},
	)
}

func (k *checker) minVersion(context.Context) error {
	v, err := k.c.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	minor, _ := strconv.Atoi(strings.TrimSuffix(v.Minor, "+"))
	if v.Major != "1" || minor < 29 {
		return fmt.Errorf("the API server is %s.%s", v.Major, v.Minor)
	}
	return nil
}

func (k *checker) canCreateClusterResources(ctx context.Context) error {
	for _, r := range []authorizationv1.ResourceAttributes{
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "create", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"},
		{Verb: "create", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"},
	} {
		review, err := k.c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &r}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if !review.Status.Allowed {
			return fmt.Errorf("not allowed to create %s", r.Resource)
		}
	}
	return nil
}

func (k *checker) controlPlaneReady(ctx context.Context) error {
	var problems []string
	for _, name := range []string{compat.IdentityComponent, compat.DestinationComponent, compat.InjectorComponent} {
		d, err := k.c.AppsV1().Deployments(k.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.ReadyReplicas < want {
			problems = append(problems, fmt.Sprintf("%s: %d of %d ready", name, d.Status.ReadyReplicas, want))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func (k *checker) crdsExist(ctx context.Context) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	var missing []string
	for _, name := range compat.CRDs {
		if _, err := k.d.Resource(gvr).Get(ctx, name, metav1.GetOptions{}); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s", strings.Join(missing, ", "))
	}
	return nil
}

// anchors reads the trust roots and checks each is valid for at least margin.
func (k *checker) anchors(ctx context.Context, margin time.Duration) ([]*x509.Certificate, error) {
	cm, err := k.c.CoreV1().ConfigMaps(k.ns).Get(ctx, compat.TrustRootsConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	certs, err := pki.ParseCertificates([]byte(cm.Data[compat.TrustRootsKey]))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", compat.TrustRootsConfigMap, err)
	}
	for _, c := range certs {
		if err := validFor(c, margin); err != nil {
			return nil, err
		}
	}
	return certs, nil
}

func (k *checker) issuer(ctx context.Context, margin time.Duration) error {
	roots, err := k.anchors(ctx, 0)
	if err != nil {
		return fmt.Errorf("trust anchors: %w", err)
	}
	s, err := k.c.CoreV1().Secrets(k.ns).Get(ctx, compat.IssuerSecret, metav1.GetOptions{})
	if err != nil {
		return err
	}
	data := s.Data["crt.pem"]
	if len(data) == 0 {
		data = s.Data["tls.crt"]
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		return fmt.Errorf("linkerd-identity-issuer: %w", err)
	}
	if err := validFor(certs[0], margin); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

func (k *checker) webhookCert(ctx context.Context) error {
	s, err := k.c.CoreV1().Secrets(k.ns).Get(ctx, compat.InjectorTLSSecret, metav1.GetOptions{})
	if err != nil {
		return err
	}
	certs, err := pki.ParseCertificates(s.Data["tls.crt"])
	if err != nil {
		return err
	}
	if err := validFor(certs[0], 0); err != nil {
		return err
	}
	wh, err := k.c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, compat.InjectorWebhookConfig, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if len(wh.Webhooks) == 0 {
		return errors.New("the webhook configuration has no webhook")
	}
	roots, err := pki.ParseCertificates(wh.Webhooks[0].ClientConfig.CABundle)
	if err != nil {
		return fmt.Errorf("caBundle: %w", err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: compat.InjectorComponent + "." + k.ns + ".svc"})
	return err
}

func (k *checker) injectorEndpoints(ctx context.Context) error {
	slices, err := k.c.DiscoveryV1().EndpointSlices(k.ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + compat.InjectorComponent})
	if err != nil {
		return err
	}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return nil
			}
		}
	}
	return errors.New("the linkerd-proxy-injector Service has no ready endpoint")
}

func (k *checker) dataPlane(ctx context.Context, versions bool) error {
	pods, err := k.c.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: compat.LabelControlPlaneNS + "=" + k.ns})
	if err != nil {
		return err
	}
	want := ""
	if versions {
		if want, err = serverVersion(ctx, k.c, k.ns); err != nil {
			return err
		}
	}
	var problems []string
	for _, p := range pods.Items {
		meshed := false
		for _, c := range append(p.Spec.Containers, p.Spec.InitContainers...) {
			meshed = meshed || c.Name == compat.ProxyContainerName
		}
		if !meshed || p.Status.Phase == "Succeeded" || p.Status.Phase == "Failed" {
			continue
		}
		if versions {
			if v := p.Annotations[compat.AnnotationProxyVersion]; v != want {
				problems = append(problems, fmt.Sprintf("%s/%s runs %q, the control plane %q", p.Namespace, p.Name, v, want))
			}
			continue
		}
		ready := false
		for _, cs := range append(p.Status.ContainerStatuses, p.Status.InitContainerStatuses...) {
			if cs.Name == compat.ProxyContainerName {
				ready = cs.Ready
			}
		}
		if !ready {
			problems = append(problems, fmt.Sprintf("%s/%s: proxy not ready", p.Namespace, p.Name))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func validFor(c *x509.Certificate, margin time.Duration) error {
	now := time.Now()
	switch {
	case now.Before(c.NotBefore):
		return fmt.Errorf("%s is not valid before %s", c.Subject.CommonName, c.NotBefore.Format(time.RFC3339))
	case now.Add(margin).After(c.NotAfter):
		return fmt.Errorf("%s expires %s", c.Subject.CommonName, c.NotAfter.Format(time.RFC3339))
	}
	return nil
}
