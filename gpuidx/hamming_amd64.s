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

// GPF is how many records ahead the gather kernel prefetches.
#define GPF 8

#define PREFETCH8(r) \
	PREFETCHT0 0(r); \
	PREFETCHT0 64(r); \
	PREFETCHT0 128(r); \
	PREFETCHT0 192(r); \
	PREFETCHT0 256(r); \
	PREFETCHT0 320(r); \
	PREFETCHT0 384(r); \
	PREFETCHT0 448(r); \
	PREFETCHT0 479(r)

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

// pack4 gathers the 32-bit sums in dwords 0, 2, 1, 3 into four uint16s.
DATA pack4<>+0(SB)/8, $0x0d0c050409080100
DATA pack4<>+8(SB)/8, $0x8080808080808080
GLOBL pack4<>(SB), RODATA|NOPTR, $16

// POP8(off, acc) sets acc to four 64-bit partial popcounts of the 64-byte
// code at off(DI) xor the query in Y12:Y11 (clobbers Y1, Y2).
#define POP8(off, acc) \
	VPXOR off(DI), Y12, Y1; \
	VPSRLW $4, Y1, Y2; \
	VPAND Y14, Y1, Y1; \
	VPAND Y14, Y2, Y2; \
	VPSHUFB Y1, Y15, Y1; \
	VPSHUFB Y2, Y15, acc; \
	VPADDB Y1, acc, acc; \
	VPXOR off+32(DI), Y11, Y1; \
	VPSRLW $4, Y1, Y2; \
	VPAND Y14, Y1, Y1; \
	VPAND Y14, Y2, Y2; \
	VPSHUFB Y1, Y15, Y1; \
	VPSHUFB Y2, Y15, Y2; \
	VPADDB Y1, acc, acc; \
	VPADDB Y2, acc, acc; \
	VPSADBW Y13, acc, acc

// func hamming8AVX2(q *uint64, codes *uint64, n int, out *uint16)
// n must be a positive multiple of 4.
TEXT ·hamming8AVX2(SB), NOSPLIT, $0-32
	MOVQ q+0(FP), SI
	MOVQ codes+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ out+24(FP), R8
	VMOVDQU nibbleLUT<>(SB), Y15
	VMOVDQU lowNibbles<>(SB), Y14
	VPXOR Y13, Y13, Y13
	VMOVDQU 0(SI), Y12
	VMOVDQU 32(SI), Y11
	VMOVDQU pack4<>(SB), X10
	SHRQ $2, CX
	JZ done8

quad8:
	POP8(0, Y3)
	POP8(64, Y4)
	POP8(128, Y5)
	POP8(192, Y6)
	// Y3..Y6 hold four 64-bit partial sums per code; fold them into one
	// 32-bit sum per code.
	VPUNPCKLQDQ Y4, Y3, Y7
	VPUNPCKHQDQ Y4, Y3, Y8
	VPADDQ Y8, Y7, Y7 // lane: code0, code1
	VPUNPCKLQDQ Y6, Y5, Y8
	VPUNPCKHQDQ Y6, Y5, Y9
	VPADDQ Y9, Y8, Y8 // lane: code2, code3
	VPSLLQ $32, Y8, Y8
	VPOR Y8, Y7, Y7 // dwords: c0, c2, c1, c3 per lane
	VEXTRACTI128 $1, Y7, X8
	VPADDD X8, X7, X7
	VPSHUFB X10, X7, X7
	VMOVQ X7, (R8)
	ADDQ $8, R8
	ADDQ $256, DI
	DECQ CX
	JNZ quad8

done8:
	VZEROUPPER
	RET

// func hamming60GatherAVX2(q *uint64, codes *uint64, slots *int32, n int, out *uint16)
// computes the distance of q to code slots[i] for i < n, prefetching ahead.
TEXT ·hamming60GatherAVX2(SB), NOSPLIT, $0-40
	MOVQ q+0(FP), SI
	MOVQ codes+8(FP), R9
	MOVQ slots+16(FP), R10
	MOVQ n+24(FP), CX
	MOVQ out+32(FP), R8
	VMOVDQU nibbleLUT<>(SB), Y15
	VMOVDQU lowNibbles<>(SB), Y14
	VPXOR Y13, Y13, Y13
	// R11 = index of the next record to prefetch, R12 = n, R13 = slots
	MOVQ CX, R12
	MOVQ R10, R13
	XORQ R11, R11
	TESTQ CX, CX
	JLE doneg

	// Prefetch the first GPF records.
prime:
	CMPQ R11, $GPF
	JAE gcode
	CMPQ R11, R12
	JAE gcode
	MOVLQSX (R13)(R11*4), AX
	IMUL3Q $480, AX, AX
	LEAQ (R9)(AX*1), AX
	PREFETCH8(AX)
	INCQ R11
	JMP prime

gcode:
	CMPQ R11, R12
	JAE noprefetch
	MOVLQSX (R13)(R11*4), AX
	IMUL3Q $480, AX, AX
	LEAQ (R9)(AX*1), AX
	PREFETCH8(AX)
	INCQ R11

noprefetch:
	MOVLQSX (R10), DI
	IMUL3Q $480, DI, DI
	ADDQ R9, DI
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
	ADDQ $4, R10
	DECQ CX
	JNZ gcode

doneg:
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

// func hamming8AVX512(q *uint64, codes *uint64, n int, limit int, out *uint16, below *uint8)
// n must be a positive multiple of 8. Eight codes at a time: each code is
// one 512-bit register, whose eight word popcounts (at most 64 each) are
// narrowed to bytes and summed with VPSADBW, one code per 64-bit lane. Bit
// j of below[i] is set when code 8i+j is at a distance below limit, so that
// the caller visits only those.
TEXT ·hamming8AVX512(SB), NOSPLIT, $0-48
	MOVQ q+0(FP), SI
	MOVQ codes+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ limit+24(FP), AX
	MOVQ out+32(FP), R8
	MOVQ below+40(FP), R9
	VMOVDQU64 (SI), Z31
	VPXORQ Z30, Z30, Z30
	VPBROADCASTW AX, X29
	SHRQ $3, CX
	JZ done8z

oct8:
	VPXORQ 0(DI), Z31, Z0
	VPXORQ 64(DI), Z31, Z1
	VPXORQ 128(DI), Z31, Z2
	VPXORQ 192(DI), Z31, Z3
	VPXORQ 256(DI), Z31, Z4
	VPXORQ 320(DI), Z31, Z5
	VPXORQ 384(DI), Z31, Z6
	VPXORQ 448(DI), Z31, Z7
	VPOPCNTQ Z0, Z0
	VPOPCNTQ Z1, Z1
	VPOPCNTQ Z2, Z2
	VPOPCNTQ Z3, Z3
	VPOPCNTQ Z4, Z4
	VPOPCNTQ Z5, Z5
	VPOPCNTQ Z6, Z6
	VPOPCNTQ Z7, Z7
	VPMOVQB Z0, X0
	VPMOVQB Z1, X1
	VPMOVQB Z2, X2
	VPMOVQB Z3, X3
	VPMOVQB Z4, X4
	VPMOVQB Z5, X5
	VPMOVQB Z6, X6
	VPMOVQB Z7, X7
	VPUNPCKLQDQ X1, X0, X0
	VPUNPCKLQDQ X3, X2, X2
	VPUNPCKLQDQ X5, X4, X4
	VPUNPCKLQDQ X7, X6, X6
	VINSERTI128 $1, X2, Y0, Y0
	VINSERTI128 $1, X6, Y4, Y4
	VINSERTI64X4 $1, Y4, Z0, Z0
	VPSADBW Z30, Z0, Z0
	VPMOVQW Z0, X0
	VMOVDQU X0, (R8)
	VPCMPUW $1, X29, X0, K1
	KMOVW K1, BX
	MOVB BX, (R9)
	ADDQ $16, R8
	INCQ R9
	ADDQ $512, DI
	DECQ CX
	JNZ oct8

done8z:
	VZEROUPPER
	RET
