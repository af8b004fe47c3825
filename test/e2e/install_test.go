//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/identity/pki"
	"github.com/weftmesh/weft/internal/imagebuild"
)

// buildWeft builds the CLI with the images' version, as a release is: weft
// install and upgrade then name the images make images built, with no image
// values.
func buildWeft(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-ldflags", "-X "+imagebuild.VersionVar+"="+imageVersion(t), "-o", dir+"/", "./cmd/weft")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "weft")
}

func weft(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig(t))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func waitControlPlane(t *testing.T) {
	t.Helper()
	for _, d := range []string{"linkerd-identity", "linkerd-destination", "linkerd-proxy-injector"} {
		kubectl(t, "", "-n", "linkerd", "rollout", "status", "deploy/"+d, "--timeout=120s")
	}
}

func removeNamespace(t *testing.T, ns string) {
	tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=true", "--timeout=60s")
}

// installWithCLI installs the CRDs and the control plane as the CLI's
// user does (weft install --crds | kubectl apply, weft install | kubectl
// apply), uninstalls them at cleanup, and waits for the control plane.
func installWithCLI(t *testing.T, w string) {
	t.Helper()
	crds, err := weft(t, w, "install", "--crds")
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, crds, "apply", "-f", "-")
	cp, err := weft(t, w, "install")
	if err != nil {
		t.Fatalf("weft install: %v\n%s", err, cp)
	}
	kubectl(t, cp, "apply", "-f", "-")
	t.Cleanup(func() {
		if out, err := weft(t, w, "uninstall"); err == nil {
			runKubectl(t, out, "delete", "-f", "-", "--wait=true", "--timeout=90s")
		}
	})
	waitControlPlane(t)
	waitInjector(t)
}

// TestCLIInstall: weft check --pre, weft install --crds | kubectl apply,
// weft install | kubectl apply, weft check, a meshed Job, weft version,
// weft uninstall | kubectl delete.
func TestCLIInstall(t *testing.T) {
	buildImages(t)
	w := buildWeft(t)
	removeNamespace(t, "linkerd")
	if out, err := weft(t, w, "check", "--pre"); err != nil {
		t.Fatalf("weft check --pre: %v\n%s", err, out)
	}
	installWithCLI(t, w)
	out, err := weft(t, w, "check")
	if err != nil || !strings.Contains(out, "Status check results are √") {
		t.Fatalf("weft check: %v\n%s", err, out)
	}
	if out, _ := weft(t, w, "version"); !strings.Contains(out, "Server version: "+imageVersion(t)) {
		t.Errorf("weft version:\n%s", out)
	}

	// weft upgrade keeps the trust anchor, the issuer and the webhook
	// certificate, and applies new values.
	before := kubectl(t, "", "-n", "linkerd", "get", "configmap", "linkerd-identity-trust-roots", "-o", "jsonpath={.data.ca-bundle\\.crt}")
	if !strings.Contains(before, "BEGIN CERTIFICATE") {
		t.Fatalf("trust roots ConfigMap: %q", before)
	}
	webhookCA := kubectl(t, "", "get", "mutatingwebhookconfiguration", "linkerd-proxy-injector-webhook-config", "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}")
	up, err := weft(t, w, "upgrade", "--set", "controllerLogLevel=debug")
	if err != nil {
		t.Fatalf("weft upgrade: %v\n%s", err, up)
	}
	kubectl(t, up, "apply", "-f", "-")
	waitControlPlane(t)
	waitInjector(t)
	if after := kubectl(t, "", "-n", "linkerd", "get", "configmap", "linkerd-identity-trust-roots", "-o", "jsonpath={.data.ca-bundle\\.crt}"); after != before {
		t.Error("weft upgrade changed the trust anchors")
	}
	if after := kubectl(t, "", "get", "mutatingwebhookconfiguration", "linkerd-proxy-injector-webhook-config", "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}"); after != webhookCA {
		t.Error("weft upgrade changed the webhook's caBundle")
	}
	if args := kubectl(t, "", "-n", "linkerd", "get", "deploy", "linkerd-identity", "-o", "jsonpath={.spec.template.spec.containers[0].args}"); !strings.Contains(args, "--log-level=debug") {
		t.Errorf("the new value did not reach the identity Deployment: %s", args)
	}
	if out, err := weft(t, w, "check"); err != nil {
		t.Fatalf("weft check after upgrade: %v\n%s", err, out)
	}

	// A meshed Job, and the data-plane checks with a proxy running.
	ns := fmt.Sprintf("cli-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(meshedApp, ns), "apply", "-f", "-")
	t.Cleanup(func() { tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=false") })
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/server", "--timeout=120s")
	if out, err := weft(t, w, "check"); err != nil || !strings.Contains(out, "√ data plane proxies are ready") {
		t.Errorf("weft check with a data plane: %v\n%s", err, out)
	}

	// Uninstall: everything labelled goes, the namespace too.
	out, err = weft(t, w, "uninstall")
	if err != nil {
		t.Fatalf("weft uninstall: %v\n%s", err, out)
	}
	for _, want := range []string{"kind: Namespace", "kind: MutatingWebhookConfiguration", "kind: ClusterRole", "kind: CustomResourceDefinition"} {
		if !strings.Contains(out, want) {
			t.Errorf("weft uninstall lists no %s:\n%s", want, out)
		}
	}
	kubectl(t, "", "delete", "namespace", ns, "--wait=true", "--timeout=60s")
	kubectl(t, out, "delete", "-f", "-", "--wait=true", "--timeout=90s")
	if err := tryKubectl(t, "get", "namespace", "linkerd"); err == nil {
		t.Error("namespace linkerd still there after weft uninstall | kubectl delete")
	}
}

// TestSeedProcedure follows the seeds' Helm procedure verbatim: the
// namespace manifest with the seed's labels, an issuer Secret of type
// kubernetes.io/tls as cert-manager writes it, ca.crt extracted with
// kubectl, the CRDs chart, then the control plane with
// identity.issuer.scheme=kubernetes.io/tls and installNamespace=false; and
// the GitOps variant with identity.externalCA=true and the trust roots
// ConfigMap made by someone else (trust-manager's Bundle). No image values:
// the chart's defaults name the images make images built.
func TestSeedProcedure(t *testing.T) {
	buildImages(t)
	for _, gitops := range []bool{false, true} {
		t.Run(map[bool]string{false: "helm", true: "gitops-external-ca"}[gitops], func(t *testing.T) {
			removeNamespace(t, "linkerd")
			kubectl(t, `kind: Namespace
apiVersion: v1
metadata:
  name: linkerd
  annotations:
    linkerd.io/inject: disabled
  labels:
    linkerd.io/is-control-plane: "true"
    config.linkerd.io/admission-webhooks: disabled
    linkerd.io/control-plane-ns: linkerd
`, "apply", "-f", "-")
			t.Cleanup(func() {
				helm(t, "uninstall", "weft-control-plane", "-n", "linkerd", "--ignore-not-found", "--wait")
				helm(t, "uninstall", "weft-crds", "-n", "linkerd", "--ignore-not-found", "--wait")
				removeNamespace(t, "linkerd")
			})
			// What cert-manager writes for the seed's Certificate (isCA,
			// ECDSA, 48h) signed by the ClusterIssuer's root.
			now := time.Now()
			root, err := pki.NewRoot("root.linkerd.cluster.local", now.Add(-time.Hour), 365*24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			iss, err := pki.NewIssuer(root, "identity.linkerd.cluster.local", now.Add(-time.Minute), 48*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
			kubectl(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: linkerd-identity-issuer, namespace: linkerd}
type: kubernetes.io/tls
data: {tls.crt: %s, tls.key: %s, ca.crt: %s}
`, b64(iss.CertPEM), b64(iss.KeyPEM), b64(root.CertPEM)), "apply", "-f", "-")

			dir := t.TempDir()
			caFile := filepath.Join(dir, "ca.crt")
			ca, err := base64.StdEncoding.DecodeString(kubectl(t, "", "get", "secret", "linkerd-identity-issuer", "-o", `jsonpath={.data.ca\.crt}`, "-n", "linkerd"))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(caFile, ca, 0o600)

			crdArgs := []string{"install", "weft-crds", "../../charts/weft-crds", "-n", "linkerd"}
			if tryKubectl(t, "get", "crd", "httproutes.gateway.networking.k8s.io") == nil {
				crdArgs = append(crdArgs, "--set", "installGatewayAPI=false") // already there, from an earlier install
			}
			helm(t, crdArgs...)
			args := []string{"install", "weft-control-plane"}
			if gitops {
				// trust-manager's Bundle writes this ConfigMap from root-secret's ca.crt.
				kubectl(t, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: linkerd-identity-trust-roots, namespace: linkerd}\ndata:\n  ca-bundle.crt: |\n%s",
					indent(string(ca), "    ")), "apply", "-f", "-")
				args = append(args, "--set", "identity.externalCA=true")
			} else {
				args = append(args, "--set-file", "identityTrustAnchorsPEM="+caFile)
			}
			args = append(args, "--set", "identity.issuer.scheme=kubernetes.io/tls", "--set", "installNamespace=false",
				"../../charts/weft-control-plane", "-n", "linkerd", "--wait", "--timeout", "3m")
			helm(t, args...) // no image values: the chart's defaults are the images built
			waitControlPlane(t)
			waitInjector(t)

			config := kubectl(t, "", "get", "configmap", "linkerd-config", "-n", "linkerd", "-o", "yaml")
			anchorLine := strings.Split(strings.TrimSpace(string(ca)), "\n")[1]
			if !gitops && !strings.Contains(config, "identityTrustAnchorsPEM") || !gitops && !strings.Contains(config, anchorLine) {
				t.Errorf("linkerd-config does not show the anchor:\n%s", config)
			}
			w := buildWeft(t)
			if out, err := weft(t, w, "check"); err != nil {
				t.Errorf("weft check: %v\n%s", err, out)
			}
			// A meshed Job reaches a meshed server over mTLS.
			ns := fmt.Sprintf("seed-%d", time.Now().UnixNano()%100000)
			kubectl(t, fmt.Sprintf(meshedApp, ns), "apply", "-f", "-")
			defer kubectl(t, "", "delete", "namespace", ns, "--wait=true", "--timeout=60s")
			kubectl(t, "", "-n", ns, "rollout", "status", "deploy/server", "--timeout=120s")
			kubectl(t, fmt.Sprintf(meshedJobs, ns, clientImage), "apply", "-f", "-")
			if err := tryKubectl(t, "-n", ns, "wait", "job/native", "--for=condition=Complete", "--timeout=120s"); err != nil {
				t.Errorf("meshed job did not complete: %v\n%s", err, tryOutput(t, "-n", ns, "logs", "job/native", "--all-containers"))
			}
		})
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}
