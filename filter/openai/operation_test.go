package openai

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		method, path, rest string
		want               Call
	}{
		{"POST", "/v1/chat/completions", "chat/completions", Call{OpChat, true}},
		{"POST", "/v1/chat/completions?api-version=1", "/chat/completions?api-version=1", Call{OpChat, true}},
		{"POST", "/v1/chat/completions/", "chat/completions/", Call{OpChat, true}},
		{"GET", "/v1/chat/completions", "chat/completions", Call{OpChat, false}},
		{"POST", "/v1/chat/completions/chatcmpl-1", "chat/completions/chatcmpl-1", Call{OpChat, false}},
		{"POST", "/v1/completions", "completions", Call{OpCompletions, true}},
		{"POST", "/v1/responses", "responses", Call{OpResponses, true}},
		{"GET", "/v1/responses/resp_1", "responses/resp_1", Call{OpResponses, false}},
		{"POST", "/v1/responses/resp_1/cancel", "responses/resp_1/cancel", Call{OpResponses, false}},
		{"POST", "/v1/embeddings", "embeddings", Call{OpEmbeddings, true}},
		{"POST", "/v1/moderations", "moderations", Call{OpModerations, true}},
		{"POST", "/v1/audio/speech", "audio/speech", Call{OpAudio, true}},
		{"POST", "/v1/audio/transcriptions", "audio/transcriptions", Call{OpAudio, true}},
		{"POST", "/v1/audio/voices", "audio/voices", Call{OpAudio, false}},
		{"POST", "/v1/images/generations", "images/generations", Call{OpImages, true}},
		{"POST", "/v1/images/edits", "images/edits", Call{OpImages, true}},
		{"POST", "/v1/files", "files", Call{OpFiles, false}},
		{"GET", "/v1/files/file-1/content", "files/file-1/content", Call{OpFiles, false}},
		{"POST", "/v1/uploads/u1/parts", "uploads/u1/parts", Call{OpFiles, false}},
		{"POST", "/v1/batches", "batches", Call{OpBatches, false}},
		{"POST", "/v1/batches/b1/cancel", "batches/b1/cancel", Call{OpBatches, false}},
		{"GET", "/v1/models", "models", Call{OpModels, false}},
		{"GET", "/v1/models/gpt-4o", "/models/gpt-4o", Call{OpModels, false}},
		// The route's prefix is the endpoint itself: the whole path decides.
		{"POST", "/v1/embeddings", "", Call{OpEmbeddings, true}},
		{"POST", "/v1/chat/completions", "/", Call{OpChat, true}},
		// Version and Azure deployment segments are skipped; a deployment
		// named like an operation is not one.
		{"POST", "/openai/deployments/embeddings/chat/completions", "/openai/deployments/embeddings/chat/completions", Call{OpChat, true}},
		{"POST", "/api/paas/v4/chat/completions", "api/paas/v4/chat/completions", Call{OpChat, true}},
		{"POST", "/chat/v1/chat/completions", "v1/chat/completions", Call{OpChat, true}},
		// Paths that name no operation.
		{"POST", "/x", "x", Call{OpOther, true}},
		{"GET", "/healthz", "healthz", Call{OpOther, false}},
		{"POST", "/v1/fine_tuning/jobs", "fine_tuning/jobs", Call{OpOther, true}},
		{"POST", "", "", Call{OpOther, true}},
		{"POST", "/chat", "chat", Call{OpOther, true}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.rest, func(t *testing.T) {
			require.Equal(t, tt.want, Classify(tt.method, tt.path, tt.rest))
		})
	}
}

func TestOperationProperties(t *testing.T) {
	tests := []struct {
		op                    Operation
		generates, streamOpts bool
	}{
		{OpChat, true, true},
		{OpCompletions, true, true},
		{OpResponses, true, false},
		{OpOther, true, true},
		{OpEmbeddings, false, false},
		{OpModerations, false, false},
		{OpAudio, false, false},
		{OpImages, false, false},
		{OpFiles, false, false},
		{OpBatches, false, false},
		{OpModels, false, false},
	}
	require.Len(t, tests, int(NumOperations))
	for _, tt := range tests {
		t.Run(tt.op.String(), func(t *testing.T) {
			require.Equal(t, tt.generates, tt.op.Generates())
			require.Equal(t, tt.streamOpts, tt.op.StreamOptions())
			back, ok := ParseOperation(tt.op.String())
			require.True(t, ok)
			require.Equal(t, tt.op, back)
		})
	}
	_, ok := ParseOperation("chat_completions")
	require.False(t, ok)
	require.False(t, Call{OpBatches, true}.Inference())
	require.True(t, Call{OpEmbeddings, true}.Inference())
	require.False(t, Call{OpEmbeddings, false}.Inference())
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		_ = Classify("POST", "/openai/deployments/d/chat/completions?x=1", "deployments/d/chat/completions?x=1")
	})
	require.Zero(t, n)
}

func FuzzClassify(f *testing.F) {
	f.Add("POST", "/v1/chat/completions", "chat/completions")
	f.Add("GET", "//deployments", "deployments/")
	f.Fuzz(func(t *testing.T, method, path, rest string) {
		c := Classify(method, path, rest)
		require.Less(t, c.Op, NumOperations)
		if method != "POST" {
			require.False(t, c.Create)
		}
	})
}
