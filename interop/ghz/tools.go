//go:build tools

// Package tools pins ghz so that `go build github.com/bojand/ghz/cmd/ghz` builds it.
package tools

import _ "github.com/bojand/ghz/cmd/ghz"
