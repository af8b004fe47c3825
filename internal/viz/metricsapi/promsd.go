package metricsapi

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// PathPrometheusSD serves Prometheus HTTP service discovery (http_sd_configs).
const PathPrometheusSD = "/api/v1/prometheus-sd"

// TargetGroup is one entry of Prometheus's HTTP service discovery answer.
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// PodTargets lists every container port of the running pods as Prometheus's
// Kubernetes discovery (role: pod) does, with the same __meta_kubernetes_*
// labels, so that the same relabel_configs apply over http_sd_configs: a
// Prometheus built without Kubernetes discovery (Debian's) can scrape the
// proxies with the seeds' relabelings.
func PodTargets(ctx context.Context, c kubernetes.Interface) ([]TargetGroup, error) {
	pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	out := []TargetGroup{}
	for i := range pods.Items {
		out = append(out, podTargets(&pods.Items[i])...)
	}
	return out, nil
}

func podTargets(p *corev1.Pod) []TargetGroup {
	if p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
		return nil
	}
	base := map[string]string{
		"__meta_kubernetes_namespace":     p.Namespace,
		"__meta_kubernetes_pod_name":      p.Name,
		"__meta_kubernetes_pod_ip":        p.Status.PodIP,
		"__meta_kubernetes_pod_node_name": p.Spec.NodeName,
		"__meta_kubernetes_pod_host_ip":   p.Status.HostIP,
		"__meta_kubernetes_pod_uid":       string(p.UID),
		"__meta_kubernetes_pod_phase":     string(p.Status.Phase),
		"__meta_kubernetes_pod_ready":     "false",
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			base["__meta_kubernetes_pod_ready"] = strings.ToLower(string(cond.Status))
		}
	}
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			base["__meta_kubernetes_pod_controller_kind"], base["__meta_kubernetes_pod_controller_name"] = o.Kind, o.Name
		}
	}
	for k, v := range p.Labels {
		base["__meta_kubernetes_pod_label_"+sanitizeLabel(k)] = v
		base["__meta_kubernetes_pod_labelpresent_"+sanitizeLabel(k)] = "true"
	}
	for k, v := range p.Annotations {
		base["__meta_kubernetes_pod_annotation_"+sanitizeLabel(k)] = v
		base["__meta_kubernetes_pod_annotationpresent_"+sanitizeLabel(k)] = "true"
	}
	var out []TargetGroup
	add := func(c corev1.Container, init bool) {
		for _, port := range c.Ports {
			l := make(map[string]string, len(base)+7)
			for k, v := range base {
				l[k] = v
			}
			l["__meta_kubernetes_pod_container_name"] = c.Name
			l["__meta_kubernetes_pod_container_image"] = c.Image
			l["__meta_kubernetes_pod_container_init"] = strconv.FormatBool(init)
			l["__meta_kubernetes_pod_container_port_name"] = port.Name
			l["__meta_kubernetes_pod_container_port_number"] = strconv.Itoa(int(port.ContainerPort))
			l["__meta_kubernetes_pod_container_port_protocol"] = string(port.Protocol)
			out = append(out, TargetGroup{Targets: []string{net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port.ContainerPort)))}, Labels: l})
		}
	}
	for _, c := range p.Spec.Containers {
		add(c, false)
	}
	for _, c := range p.Spec.InitContainers { // native sidecars (the proxy with restartPolicy Always)
		add(c, true)
	}
	return out
}

// sanitizeLabel is how Kubernetes discovery turns a name into a label name.
func sanitizeLabel(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
