#include "textflag.h"

// The scans of scan.go and prompt.go written in WebAssembly for GOARCH=wasm.
// Upstream Go compiles every loop of a function into a jump through the
// function's dispatch table and keeps its values in linear memory between
// blocks; these loops use the VM's own structured branches and locals. Each
// gives exactly the result of its Go counterpart (stringEndGo,
// flatMessagesGo), which the tests check when run under a Wasm runtime
// (e2e TestBodyScansUnderWasm).
//
// Registers are the function's i64 locals. Throughout:
//   R0  the address of body[0]
//   R1  len(body)
//   R6  QUOTES8 (a quote in every byte)
//   R10 LO8 (1 in every byte)

#define LO8 $72340172838076673
#define HI8 $-9187201950435737472
#define QUOTES8 $2459565876494606882

// MASK(OFF) leaves on the stack the quote mask of the word at address
// R4+OFF: the high bit of each byte that is a quote (the lowest one exact, as
// quoteMask; the caller ands HI8). Uses R5.
#define MASK(OFF) \
	Get R4; \
	I32WrapI64; \
	I64Load $OFF; \
	Get R6; \
	I64Xor; \
	Tee R5; \
	Get R10; \
	I64Sub; \
	Get R5; \
	I64Const $-1; \
	I64Xor; \
	I64And

// PLAIN(OFF) leaves on the stack (x^QUOTES8)-LO8 | x for the word x at
// address R4+OFF: with HI8 it is 0 when no byte of x is a quote nor has its
// high bit (as stringEndGo's 64-byte step). Uses R5.
#define PLAIN(OFF) \
	Get R4; \
	I32WrapI64; \
	I64Load $OFF; \
	Tee R5; \
	Get R6; \
	I64Xor; \
	Get R10; \
	I64Sub; \
	Get R5; \
	I64Or

// EXACT(OFF) branches out of the 64-byte loop's blocks to the found block
// with R4 = the offset of the first quote in the word at R4+OFF, if any.
// Uses R2 and R5.
#define EXACT(OFF) \
	MASK(OFF); \
	I64Const HI8; \
	I64And; \
	Tee R2; \
	I64Eqz; \
	I32Eqz; \
	If; \
		Get R3; \
		I64Const $OFF; \
		I64Add; \
		Get R2; \
		I64Ctz; \
		I64Const $3; \
		I64ShrU; \
		I64Add; \
		Set R4; \
		Br $4; \
	End

// WORD checks the word at R3 exactly, if the body holds it: a quote there
// branches to the found block (two levels out) with R4 its offset, else R3
// moves past the word.
#define WORD \
	Get R3; \
	I64Const $8; \
	I64Add; \
	Get R1; \
	I64LeU; \
	If; \
		Get R0; \
		Get R3; \
		I64Add; \
		Set R4; \
		MASK(0); \
		I64Const HI8; \
		I64And; \
		Tee R2; \
		I64Eqz; \
		I32Eqz; \
		If; \
			Get R3; \
			Get R2; \
			I64Ctz; \
			I64Const $3; \
			I64ShrU; \
			I64Add; \
			Set R4; \
			Br $2; \
		End; \
		Get R3; \
		I64Const $8; \
		I64Add; \
		Set R3; \
	End

// STRING_END: R2 is the offset of a string's opening quote; leaves in R2
// the offset just past its closing quote, or -1 when the body ends inside
// it (stringEndGo). Uses R3, R4, R5.
//
// Blocks, outermost first: the result; the search from R3; found (R4 is a
// quote's offset), after a look at the first four words one by one (most
// names and values of a message end there); the bytes of the tail; the
// 8-byte words of the rest; the 64-byte steps.
#define STRING_END \
	Get R2; \
	I64Const $1; \
	I64Add; \
	Set R3; \
	Block; \
	Loop; \
		Block; \
			WORD; \
			WORD; \
			WORD; \
			WORD; \
			Block; \
				Block; \
					Loop; \
						Get R3; \
						I64Const $64; \
						I64Add; \
						Get R1; \
						I64GtU; \
						BrIf $1; \
						Get R0; \
						Get R3; \
						I64Add; \
						Set R4; \
						PLAIN(0); \
						PLAIN(8); \
						I64Or; \
						PLAIN(16); \
						I64Or; \
						PLAIN(24); \
						I64Or; \
						PLAIN(32); \
						I64Or; \
						PLAIN(40); \
						I64Or; \
						PLAIN(48); \
						I64Or; \
						PLAIN(56); \
						I64Or; \
						I64Const HI8; \
						I64And; \
						I64Eqz; \
						If; \
							Get R3; \
							I64Const $64; \
							I64Add; \
							Set R3; \
							Br $1; \
						End; \
						EXACT(0); \
						EXACT(8); \
						EXACT(16); \
						EXACT(24); \
						EXACT(32); \
						EXACT(40); \
						EXACT(48); \
						EXACT(56); \
						Get R3; \
						I64Const $64; \
						I64Add; \
						Set R3; \
						Br $0; \
					End; \
				End; \
				Loop; \
					Get R3; \
					I64Const $8; \
					I64Add; \
					Get R1; \
					I64GtU; \
					BrIf $1; \
					Get R0; \
					Get R3; \
					I64Add; \
					Set R4; \
					MASK(0); \
					I64Const HI8; \
					I64And; \
					Tee R4; \
					I64Eqz; \
					If; \
						Get R3; \
						I64Const $8; \
						I64Add; \
						Set R3; \
						Br $1; \
					End; \
					Get R3; \
					Get R4; \
					I64Ctz; \
					I64Const $3; \
					I64ShrU; \
					I64Add; \
					Set R4; \
					Br $2; \
				End; \
			End; \
			Loop; \
				Get R3; \
				Get R1; \
				I64GeU; \
				If; \
					I64Const $-1; \
					Set R2; \
					Br $4; \
				End; \
				BYTE(R3); \
				I64Const $34; \
				I64Eq; \
				If; \
					Get R3; \
					Set R4; \
					Br $2; \
				End; \
				Get R3; \
				I64Const $1; \
				I64Add; \
				Set R3; \
				Br $0; \
			End; \
		End; \
		Get R4; \
		I64Const $1; \
		I64Sub; \
		Set R5; \
		Block; \
			Loop; \
				BYTE(R5); \
				I64Const $92; \
				I64Ne; \
				BrIf $1; \
				Get R5; \
				I64Const $1; \
				I64Sub; \
				Set R5; \
				Br $0; \
			End; \
		End; \
		Get R4; \
		Get R5; \
		I64Sub; \
		I64Const $1; \
		I64And; \
		I64Eqz; \
		I32Eqz; \
		If; \
			Get R4; \
			I64Const $1; \
			I64Add; \
			Set R2; \
			Br $2; \
		End; \
		Get R4; \
		I64Const $1; \
		I64Add; \
		Set R3; \
		Br $0; \
	End; \
	End

// BYTE(R) leaves body[R] on the stack.
#define BYTE(R) \
	Get R0; \
	Get R; \
	I64Add; \
	I32WrapI64; \
	I64Load8U $0

#define CONSTANTS \
	I64Const QUOTES8; \
	Set R6; \
	I64Const LO8; \
	Set R10

// func stringEnd(body []byte, pos int) int
TEXT ·stringEnd(SB), NOSPLIT, $0-40
	MOVD body_base+0(FP), R0
	MOVD body_len+8(FP), R1
	MOVD pos+24(FP), R2
	CONSTANTS
	STRING_END
	MOVD R2, ret+32(FP)
	RET

#define CONTENT_WORD $2482730676612132707

// func flatMessages(body []byte, pos int) (end int, text int64)
//
//   R7  p, a member name's opening quote     R8  ve, past a value's closing quote
//   R9  e, past the name's closing quote     R11 the message's text
//   R12 the messages' text                   R13 end
//   R14 1 when the name is "content"         R15 scratch
TEXT ·flatMessages(SB), NOSPLIT, $0-48
	MOVD body_base+0(FP), R0
	MOVD body_len+8(FP), R1
	MOVD pos+24(FP), R7
	CONSTANTS
	Get R7
	I64Const $1
	I64Add
	Set R7
	I64Const $-1
	Set R13
	I64Const $0
	Set R12
	Block // messages read
	Loop // a message, R7 past its '{'
		Block // not flat
		Block // the message ended at R8
		I64Const $0
		Set R11
		Loop // a member at R7
			// p+1 < n and body[p] == '"'
			Get R7
			I64Const $1
			I64Add
			Get R1
			I64GeS
			BrIf $2
			BYTE(R7)
			I64Const $34
			I64Ne
			BrIf $2
			Get R7
			Set R2
			STRING_END
			Get R2
			Set R9
			// e >= 0, e+1 < n, body[e] == ':'
			Get R9
			I64Const $0
			I64LtS
			BrIf $2
			Get R9
			I64Const $1
			I64Add
			Get R1
			I64GeS
			BrIf $2
			BYTE(R9)
			I64Const $58
			I64Ne
			BrIf $2
			// content: the name is "content" as one word
			Get R9
			Get R7
			I64Sub
			I64Const $9
			I64Eq
			If
				Get R0
				Get R7
				I64Add
				I32WrapI64
				I64Load $1
				I64Const CONTENT_WORD
				I64Eq
				I64ExtendI32U
				Set R14
			Else
				I64Const $0
				Set R14
			End
			// a longer name with a backslash may spell "content"
			Get R9
			Get R7
			I64Sub
			I64Const $9
			I64GtS
			If
				Get R7
				I64Const $1
				I64Add
				Set R15
				Block
					Loop
						Get R15
						Get R9
						I64Const $1
						I64Sub
						I64GeS
						BrIf $1
						BYTE(R15)
						I64Const $92
						I64Eq
						BrIf $5
						Get R15
						I64Const $1
						I64Add
						Set R15
						Br $0
					End
				End
			End
			// the value: a string at v = e+1, or e+2 after one space
			Get R9
			I64Const $1
			I64Add
			Set R2
			BYTE(R2)
			I64Const $32
			I64Eq
			If
				Get R2
				I64Const $1
				I64Add
				Set R2
			End
			Get R2
			Get R1
			I64GeS
			BrIf $2
			BYTE(R2)
			I64Const $34
			I64Ne
			BrIf $2
			Get R2
			Set R15
			STRING_END
			Get R2
			Set R8
			Get R8
			I64Const $0
			I64LtS
			BrIf $2
			Get R8
			Get R1
			I64GeS
			BrIf $2
			Get R14
			I32WrapI64
			If
				Get R11
				Get R8
				Get R15
				I64Sub
				I64Const $2
				I64Sub
				I64Add
				Set R11
			End
			// '}' ends the message, ',' (maybe and a space) another member
			BYTE(R8)
			Set R15
			Get R15
			I64Const $125
			I64Eq
			BrIf $1
			Get R15
			I64Const $44
			I64Ne
			BrIf $2
			Get R8
			I64Const $1
			I64Add
			Set R7
			Get R7
			Get R1
			I64LtS
			If
				BYTE(R7)
				I64Const $32
				I64Eq
				If
					Get R7
					I64Const $1
					I64Add
					Set R7
				End
			End
			Br $0
		End
		End
		// the message is read: end, text; another after ',' (maybe and a space)?
		Get R8
		I64Const $1
		I64Add
		Set R13
		Get R12
		Get R11
		I64Add
		Set R12
		Get R13
		I64Const $1
		I64Add
		Get R1
		I64GeS
		BrIf $2
		BYTE(R13)
		I64Const $44
		I64Ne
		BrIf $2
		Get R13
		I64Const $1
		I64Add
		Set R7
		BYTE(R7)
		I64Const $32
		I64Eq
		If
			Get R7
			I64Const $1
			I64Add
			Set R7
		End
		Get R7
		Get R1
		I64GeS
		BrIf $2
		BYTE(R7)
		I64Const $123
		I64Ne
		BrIf $2
		Get R7
		I64Const $1
		I64Add
		Set R7
		Br $1
		End
	End
	End
	MOVD R13, end+32(FP)
	MOVD R12, text+40(FP)
	RET
