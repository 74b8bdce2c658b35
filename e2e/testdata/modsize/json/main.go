// Command json is the empty reactor plus encoding/json decoding a request
// body and encoding it again (docs/RATIONALE.md).
package main

import "encoding/json"

func main() {}

var body = []byte(`{"model":"gpt-4o-mini","stream":true,"max_tokens":64}`)

//go:wasmexport run
func run(n int32) int32 {
	var req struct {
		Model     string `json:"model"`
		Stream    bool   `json:"stream"`
		MaxTokens int    `json:"max_tokens"`
	}
	if json.Unmarshal(body, &req) != nil {
		return -1
	}
	req.MaxTokens += int(n)
	out, _ := json.Marshal(&req)
	return int32(len(out))
}
