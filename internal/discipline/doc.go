// Package discipline holds tests that keep the code base's rules: every
// package has a doc comment, the proxy does not depend on Kubernetes client
// libraries, and no package hides behind a name like util or common.
package discipline
