// Command jsonfmt is the empty reactor plus encoding/json and fmt, what a
// filter written the usual way imports (docs/RATIONALE.md).
package main

import (
	"encoding/json"
	"fmt"
)

func main() {}

var body = []byte(`{"model":"gpt-4o-mini","stream":true,"max_tokens":64}`)

var sink string

//go:wasmexport run
func run(n int32) int32 {
	var req struct {
		Model     string `json:"model"`
		Stream    bool   `json:"stream"`
		MaxTokens int    `json:"max_tokens"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		sink = fmt.Sprintf("bad body: %v", err)
		return -1
	}
	sink = fmt.Sprintf("model %s, %d tokens", req.Model, req.MaxTokens+int(n))
	return int32(len(sink))
}
