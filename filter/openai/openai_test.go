package openai

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestErrorBodyIsOpenAIShape(t *testing.T) {
	var got struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(ErrorBody(`rate "limit" reached`, TypeRateLimit, "requests"), &got))
	require.Equal(t, `rate "limit" reached`, got.Error.Message)
	require.Equal(t, "rate_limit_exceeded", got.Error.Type)
	require.Equal(t, "requests", *got.Error.Code)

	require.NoError(t, json.Unmarshal(ErrorBody("m", TypeServer, ""), &got))
	require.Nil(t, got.Error.Code)
}
