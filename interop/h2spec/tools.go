//go:build tools

// Package tools pins h2spec so that `go build github.com/summerwind/h2spec/cmd/h2spec` builds it.
package tools

import _ "github.com/summerwind/h2spec/cmd/h2spec"
