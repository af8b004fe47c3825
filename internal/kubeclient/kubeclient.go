// Package kubeclient builds Kubernetes client configuration from a
// kubeconfig path or, without one, the in-cluster service account: the
// one place the CLI and every control-plane component load it.
package kubeclient

import (
	"fmt"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config loads a kubeconfig path ("" for the default loading rules:
// $KUBECONFIG, ~/.kube/config), or the in-cluster config.
func Config(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	return cfg, nil
}

// Clientset builds a clientset from Config(kubeconfig).
func Clientset(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := Config(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// Clients builds a clientset and a dynamic client from Config(kubeconfig);
// timeout, when not zero, bounds each request.
func Clients(kubeconfig string, timeout time.Duration) (kubernetes.Interface, dynamic.Interface, error) {
	cfg, err := Config(kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	cfg.Timeout = timeout
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	return c, d, nil
}
