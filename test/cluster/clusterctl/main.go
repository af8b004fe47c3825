// Command clusterctl runs Weft's single-node test cluster: etcd,
// kube-apiserver, controller-manager, scheduler, containerd, kubelet,
// kube-proxy (iptables mode) and CoreDNS, all on this machine, started by pid
// and stopped by pid. State lives under one folder (WEFT_CLUSTER_DIR,
// default /tmp/weft-cluster). See test/cluster/README.md.
//
//	clusterctl up       start (idempotent), print the kubeconfig path
//	clusterctl down     stop everything it started and remove its state
//	clusterctl status   say what runs
//	clusterctl load IMAGE.tar...   import images into containerd
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: clusterctl up|down|status|load IMAGE.tar...")
		os.Exit(2)
	}
	closeInheritedFiles()
	c := &cluster{dir: stateDir(), bin: binDir()}
	var err error
	switch os.Args[1] {
	case "up":
		start := time.Now()
		if err = c.up(); err == nil {
			fmt.Fprintf(os.Stderr, "cluster ready in %v\n", time.Since(start).Round(100*time.Millisecond))
			fmt.Println(c.kubeconfig())
		}
	case "down":
		err = c.down()
	case "status":
		err = c.status()
	case "load":
		err = c.importImages(os.Args[2:]...)
	default:
		err = fmt.Errorf("unknown command %q (want up, down, status or load)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "clusterctl: %v\n", err)
		os.Exit(1)
	}
}

func stateDir() string {
	if d := os.Getenv("WEFT_CLUSTER_DIR"); d != "" {
		return d
	}
	return "/tmp/weft-cluster"
}

func binDir() string {
	if d := os.Getenv("WEFT_K8S_BIN"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "weft", "bin")
}

// closeInheritedFiles marks every descriptor above stderr close-on-exec, so
// the daemons up starts do not inherit what clusterctl was started with —
// such as the lock of `flock /tmp/weft-cluster.lock make cluster-up`, which
// they would otherwise hold for as long as the cluster runs.
func closeInheritedFiles() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
