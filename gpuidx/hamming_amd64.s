//go:build amd64 && !purego

#include "textflag.h"

// Popcount of each nibble value 0..15, twice (one per 128-bit lane).
DATA nibbleLUT<>+0(SB)/8, $0x0302020102010100
DATA nibbleLUT<>+8(SB)/8, $0x0403030203020201
DATA nibbleLUT<>+16(SB)/8, $0x0302020102010100
DATA nibbleLUT<>+24(SB)/8, $0x0403030203020201
GLOBL nibbleLUT<>(SB), RODATA|NOPTR, $32

DATA lowNibbles<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA lowNibbles<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA lowNibbles<>+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA lowNibbles<>+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL lowNibbles<>(SB), RODATA|NOPTR, $32

// func hammingAVX2(q *uint64, codes *uint64, n int, words int, out *uint16)
TEXT ·hammingAVX2(SB), NOSPLIT, $0-40
	MOVQ q+0(FP), SI
	MOVQ codes+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ words+24(FP), DX
	MOVQ out+32(FP), R8
	VMOVDQU nibbleLUT<>(SB), Y15
	VMOVDQU lowNibbles<>(SB), Y14
	VPXOR Y13, Y13, Y13
	SHLQ $3, DX // bytes per code
	TESTQ CX, CX
	JLE done

code:
	VPXOR Y0, Y0, Y0 // per-byte counts, at most 15*8 = 120 each
	XORQ AX, AX

chunk:
	VMOVDQU (DI)(AX*1), Y1
	VPXOR (SI)(AX*1), Y1, Y1
	VPAND Y14, Y1, Y2
	VPSRLW $4, Y1, Y1
	VPAND Y14, Y1, Y1
	VPSHUFB Y2, Y15, Y2
	VPSHUFB Y1, Y15, Y1
	VPADDB Y2, Y0, Y0
	VPADDB Y1, Y0, Y0
	ADDQ $32, AX
	CMPQ AX, DX
	JB chunk

	VPSADBW Y13, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDQ X1, X0, X0
	VPSRLDQ $8, X0, X1
	VPADDQ X1, X0, X0
	VMOVQ X0, BX
	MOVW BX, (R8)
	ADDQ $2, R8
	ADDQ DX, DI
	DECQ CX
	JNZ code

done:
	VZEROUPPER
	RET

// PF is how far ahead (bytes, 8 codes) the 60-word kernel prefetches.
#define PF 3840

#define CHUNK(off, acc) \
	VMOVDQU off(DI), Y1; \
	VPXOR off(SI), Y1, Y1; \
	VPSRLW $4, Y1, Y2; \
	VPAND Y14, Y1, Y1; \
	VPAND Y14, Y2, Y2; \
	VPSHUFB Y1, Y15, Y1; \
	VPSHUFB Y2, Y15, Y2; \
	VPADDB Y1, acc, acc; \
	VPADDB Y2, acc, acc

// func hamming60AVX2(q *uint64, codes *uint64, n int, out *uint16)
TEXT ·hamming60AVX2(SB), NOSPLIT, $0-32
	MOVQ q+0(FP), SI
	MOVQ codes+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ out+24(FP), R8
	VMOVDQU nibbleLUT<>(SB), Y15
	VMOVDQU lowNibbles<>(SB), Y14
	VPXOR Y13, Y13, Y13
	TESTQ CX, CX
	JLE done60

code60:
	PREFETCHT0 PF+0(DI)
	PREFETCHT0 PF+64(DI)
	PREFETCHT0 PF+128(DI)
	PREFETCHT0 PF+192(DI)
	PREFETCHT0 PF+256(DI)
	PREFETCHT0 PF+320(DI)
	PREFETCHT0 PF+384(DI)
	PREFETCHT0 PF+448(DI)
	VPXOR Y0, Y0, Y0
	VPXOR Y3, Y3, Y3
	CHUNK(0, Y0)
	CHUNK(32, Y3)
	CHUNK(64, Y0)
	CHUNK(96, Y3)
	CHUNK(128, Y0)
	CHUNK(160, Y3)
	CHUNK(192, Y0)
	CHUNK(224, Y3)
	CHUNK(256, Y0)
	CHUNK(288, Y3)
	CHUNK(320, Y0)
	CHUNK(352, Y3)
	CHUNK(384, Y0)
	CHUNK(416, Y3)
	CHUNK(448, Y0)
	VPADDB Y3, Y0, Y0
	VPSADBW Y13, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDQ X1, X0, X0
	VPSRLDQ $8, X0, X1
	VPADDQ X1, X0, X0
	VMOVQ X0, BX
	MOVW BX, (R8)
	ADDQ $2, R8
	ADDQ $480, DI
	DECQ CX
	JNZ code60

done60:
	VZEROUPPER
	RET

// func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL eaxArg+0(FP), AX
	MOVL ecxArg+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func xgetbv() (eax, edx uint32)
TEXT ·xgetbv(SB), NOSPLIT, $0-8
	MOVL $0, CX
	XGETBV
	MOVL AX, eax+0(FP)
	MOVL DX, edx+4(FP)
	RET
