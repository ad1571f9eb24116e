#include "textflag.h"

// func butterfliesAVX2(x *float32, n, h int)
//
// Radix-2 stages of the Walsh–Hadamard transform of x[:n], for butterfly
// half-sizes h, 2h, ... n/2; n and h are powers of two, h >= 8. Each stage
// is the same adds and subtracts as fwhtFrom's, in the same order, so the
// result is bit for bit the same.
TEXT ·butterfliesAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ h+16(FP), DX
	SHLQ $2, CX            // n in bytes
	SHLQ $2, DX            // h in bytes
stage:
	CMPQ DX, CX
	JGE  done
	XORQ SI, SI            // block start, bytes
block:
	LEAQ (DI)(SI*1), R9    // x[i+j]
	LEAQ (R9)(DX*1), R10   // x[i+j+h]
	MOVQ DX, R11           // bytes left in this half
inner:
	VMOVUPS (R9), Y0
	VMOVUPS (R10), Y1
	VADDPS  Y1, Y0, Y2     // Y2 = Y0 + Y1
	VSUBPS  Y1, Y0, Y3     // Y3 = Y0 - Y1
	VMOVUPS Y2, (R9)
	VMOVUPS Y3, (R10)
	ADDQ    $32, R9
	ADDQ    $32, R10
	SUBQ    $32, R11
	JNZ     inner
	LEAQ (SI)(DX*2), SI    // next block of 2h
	CMPQ SI, CX
	JL   block
	SHLQ $1, DX
	JMP  stage
done:
	VZEROUPPER
	RET
