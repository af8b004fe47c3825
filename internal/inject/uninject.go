package inject

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/jsonpatch"
)

// What injection adds, which uninjection removes.
var (
	injectedAnnotations = []string{compat.AnnotationInject, compat.AnnotationCreatedBy, compat.AnnotationProxyVersion,
		compat.AnnotationTrustRootSHA256, compat.AnnotationIdentityMode}
	injectedVolumes = []string{compat.IdentityEndEntityVolume, compat.IdentityTokenVolume, compat.XtablesLockVolume}
)

func injectedLabel(k string) bool {
	return k == compat.LabelControlPlaneNS || k == compat.LabelWorkloadNS || strings.HasPrefix(k, compat.LabelProxyKindPrefix)
}

func injectedItem(name string) bool {
	return name == compat.ProxyContainerName || name == compat.InitContainerName || slices.Contains(injectedVolumes, name)
}

// Uninject returns the JSON patch that removes from a resource (its JSON)
// what injection added: the proxy and init containers, their volumes, the
// annotations and labels Patch writes, linkerd.io/inject itself, and a
// template's metadata left empty. On a Namespace it removes
// linkerd.io/inject. Maps and lists left empty go; everything else the
// user wrote stays. An empty patch means there is nothing to remove (also
// for kinds without a pod spec).
func Uninject(raw []byte) ([]jsonpatch.Op, error) {
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("decoding the resource: %w", err)
	}
	kind, _ := doc["kind"].(string)
	if kind == "Namespace" {
		meta, _ := doc["metadata"].(map[string]any)
		ops, _ := removeKeys("/metadata/annotations", meta, "annotations", func(k string) bool { return k == compat.AnnotationInject })
		return ops, nil
	}
	if !Supported(kind) {
		return nil, nil
	}
	p := TemplatePath(kind)
	tmpl := doc
	for _, key := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if key == "" {
			continue
		}
		if tmpl, _ = tmpl[key].(map[string]any); tmpl == nil {
			return nil, nil // no pod template: nothing was injected
		}
	}
	meta, _ := tmpl["metadata"].(map[string]any)
	spec, _ := tmpl["spec"].(map[string]any)
	// kubectl.kubernetes.io/default-container goes only when it names the
	// first app container, which is what Patch writes; one naming another
	// container is the user's own. (One the user set to that same
	// container cannot be told apart and goes too: it is what Kubernetes
	// picks without the annotation anyway.)
	firstApp := ""
	if cs, ok := spec["containers"].([]any); ok {
		for _, c := range cs {
			if name := itemName(c); name != compat.ProxyContainerName {
				firstApp = name
				break
			}
		}
	}
	annotations, _ := meta["annotations"].(map[string]any)
	ours := firstApp != "" && annotations[compat.AnnotationDefaultContainer] == firstApp

	var ops []jsonpatch.Op
	metaLeft := len(meta)
	annOps, annGone := removeKeys(p+"/metadata/annotations", meta, "annotations", func(k string) bool {
		if k == compat.AnnotationDefaultContainer {
			return ours
		}
		return slices.Contains(injectedAnnotations, k)
	})
	ops = append(ops, annOps...)
	labelOps, labelsGone := removeKeys(p+"/metadata/labels", meta, "labels", injectedLabel)
	ops = append(ops, labelOps...)
	for _, gone := range []bool{annGone, labelsGone} {
		if gone {
			metaLeft--
		}
	}
	for _, list := range []string{"containers", "initContainers", "volumes"} {
		items, _ := spec[list].([]any)
		ops = append(ops, removeItems(p+"/spec/"+list, items)...)
	}
	if len(ops) > 0 && p != "" && meta != nil && metaLeft == 0 {
		// The template's metadata inject created, now empty.
		ops = append(ops, jsonpatch.Remove(p+"/metadata"))
	}
	return ops, nil
}

// removeKeys removes the matching keys of parent[field] (a map at path),
// or the whole map when none would be left; gone reports the latter.
func removeKeys(path string, parent map[string]any, field string, match func(string) bool) (ops []jsonpatch.Op, gone bool) {
	m, _ := parent[field].(map[string]any)
	var keys []string
	for k := range m {
		if match(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, false
	}
	if len(keys) == len(m) {
		return []jsonpatch.Op{jsonpatch.Remove(path)}, true
	}
	slices.Sort(keys)
	for _, k := range keys {
		ops = append(ops, jsonpatch.Remove(path+"/"+jsonpatch.Escape(k)))
	}
	return ops, false
}

// removeItems removes the injected items of the list at path, highest
// index first so that each index still names its item, or the whole list
// when none would be left.
func removeItems(path string, items []any) []jsonpatch.Op {
	var idx []int
	for i, item := range items {
		if injectedItem(itemName(item)) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	if len(idx) == len(items) {
		return []jsonpatch.Op{jsonpatch.Remove(path)}
	}
	ops := make([]jsonpatch.Op, 0, len(idx))
	for i := len(idx) - 1; i >= 0; i-- {
		ops = append(ops, jsonpatch.Remove(path+"/"+strconv.Itoa(idx[i])))
	}
	return ops
}

func itemName(item any) string {
	m, _ := item.(map[string]any)
	name, _ := m["name"].(string)
	return name
}
