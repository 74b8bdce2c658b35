// Package wiretest holds fixtures the codecs' tests share. It imports the
// protobuf runtime, so only tests may use it.
package wiretest

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shepherd-mesh/shepherd/filter/wire"
)

// UnknownFields returns fields with numbers no version of the messages uses, of
// every wire type.
func UnknownFields() []byte {
	var b []byte
	b = protowire.AppendVarint(protowire.AppendTag(b, 1000, protowire.VarintType), math.MaxUint64)
	b = protowire.AppendFixed64(protowire.AppendTag(b, 2000, protowire.Fixed64Type), 1)
	b = protowire.AppendFixed32(protowire.AppendTag(b, 3000, protowire.Fixed32Type), 1)
	b = protowire.AppendBytes(protowire.AppendTag(b, wire.MaxField, protowire.BytesType), []byte("\x08\x01future"))
	return b
}

// AddUnknown appends UnknownFields to m's unknown fields, as a newer sender's
// fields would arrive.
func AddUnknown(m protoreflect.ProtoMessage) {
	r := m.ProtoReflect()
	r.SetUnknown(append(r.GetUnknown(), UnknownFields()...))
}
