// Kernels of the gpuidx GPU backend. Built by the OpenCL driver when the
// index opens. Codes are 60 64-bit words (compress.Words); record i's code
// is at codes[i*60], its prefix (the first PW words again) at prefix[i*PW].
//
// Results must equal the CPU backend's: distances are exact integers, and
// rerank reproduces compress.Dot's summation order in float32 with
// contraction off, so scores are bit-identical.

#pragma OPENCL FP_CONTRACT OFF

#define WORDS 60
#define DIM 3840
#define HS 3848      // histogram stride per query, > DIM
#define NOPASS 0xFFFF // distance slot of a record the filters drop

// Query parameters: 4 ints per query.
//   qp[4b+0]  1: scan the prefix buffer, 0: the full codes
//   qp[4b+1]  words to compare
//   qp[4b+2]  minimum confidence (float bits)
//   qp[4b+3]  offset of the allowed-domain bitmask in masks, -1: all domains

// scan: distance of query b (dimension 1) to record i (dimension 0), NOPASS
// for records the filters drop, and the histogram of the kept distances.
__kernel void scan(__global const ulong *codes, __global const ulong *prefix, int pw,
                   __global const float *conf, __global const uchar *flags,
                   __global const uint *dom, __global const uint *masks,
                   __global const ulong *qcodes, __global const int *qp,
                   int n, int cap, __global ushort *dist, __global uint *hist)
{
	__local uint lh[HS];
	int i = get_global_id(0);
	int b = get_global_id(1);
	int lid = get_local_id(0);
	int ls = get_local_size(0);
	for (int j = lid; j < HS; j += ls)
		lh[j] = 0;
	barrier(CLK_LOCAL_MEM_FENCE);
	if (i < n) {
		int usep = qp[4 * b];
		int nw = qp[4 * b + 1];
		float mc = as_float(qp[4 * b + 2]);
		int mo = qp[4 * b + 3];
		float c = conf[i];
		int ok = (flags[i] & 1) == 0 && !(c < mc);
		if (ok && mo >= 0) {
			uint d = dom[i];
			ok = (masks[mo + (d >> 5)] >> (d & 31)) & 1;
		}
		ushort out = NOPASS;
		if (ok) {
			__global const ulong *q = qcodes + b * WORDS;
			__global const ulong *r = usep ? prefix + (size_t)i * pw : codes + (size_t)i * WORDS;
			uint s = 0;
			for (int w = 0; w < nw; w++)
				s += (uint)popcount(q[w] ^ r[w]);
			out = (ushort)s;
			atomic_inc(&lh[s]);
		}
		dist[(size_t)b * cap + i] = out;
	}
	barrier(CLK_LOCAL_MEM_FENCE);
	for (int j = lid; j < HS; j += ls) {
		uint v = lh[j];
		if (v)
			atomic_add(&hist[b * HS + j], v);
	}
}

// ties: per work-group count of records of query b at distance thr[b]
// (queries with thr[b] < 0 are skipped).
__kernel void ties(__global const ushort *dist, int n, int cap,
                   __global const int *thr, __global uint *groups, int ngroups)
{
	__local uint cnt;
	int i = get_global_id(0);
	int b = get_global_id(1);
	if (get_local_id(0) == 0)
		cnt = 0;
	barrier(CLK_LOCAL_MEM_FENCE);
	int t = thr[b];
	if (t >= 0 && i < n && dist[(size_t)b * cap + i] == t)
		atomic_inc(&cnt);
	barrier(CLK_LOCAL_MEM_FENCE);
	if (get_local_id(0) == 0)
		groups[b * ngroups + get_group_id(0)] = cnt;
}

// compact: the records of query b below thr[b], and those at thr[b] with a
// slot below slim[b], as (distance<<32 | slot), at out[off[b]...] in any
// order; cnt[b] counts them, at most lim[b] are written.
__kernel void compact(__global const ushort *dist, int n, int cap,
                      __global const int *thr, __global const int *slim,
                      __global const int *off, __global const int *lim,
                      __global uint *cnt, __global ulong *out)
{
	int i = get_global_id(0);
	int b = get_global_id(1);
	if (i >= n)
		return;
	int t = thr[b];
	int d = dist[(size_t)b * cap + i];
	if (d < t || d == t && i < slim[b]) {
		uint p = atomic_inc(&cnt[b]);
		if (p < (uint)lim[b])
			out[off[b] + p] = ((ulong)d << 32) | (uint)i;
	}
}

// gather: full distance of query pq[j] to record ps[j].
__kernel void gather(__global const ulong *codes, __global const ulong *qcodes,
                     __global const int *pq, __global const int *ps, int m,
                     __global ushort *out)
{
	int j = get_global_id(0);
	if (j >= m)
		return;
	__global const ulong *q = qcodes + pq[j] * WORDS;
	__global const ulong *r = codes + (size_t)ps[j] * WORDS;
	uint s = 0;
	for (int w = 0; w < WORDS; w++)
		s += (uint)popcount(q[w] ^ r[w]);
	out[j] = (ushort)s;
}

// rerank: qnorm[pq[j]] * (float query pq[j]) · sign(code ps[j]), summed as
// compress.Dot sums it: groups of four components, each group's set
// components added from the highest down, group g into lane g % 4.
__kernel void rerank(__global const ulong *codes, __global const float *qvec,
                     __global const float *qnorm, __global const int *pq,
                     __global const int *ps, int m, __global float *out)
{
	int j = get_global_id(0);
	if (j >= m)
		return;
	__global const float *x = qvec + (size_t)pq[j] * DIM;
	__global const ulong *r = codes + (size_t)ps[j] * WORDS;
	float p[4] = {0, 0, 0, 0}, a[4] = {0, 0, 0, 0};
	for (int g = 0; g < DIM / 4; g++) {
		uint nib = (uint)(r[g / 16] >> (4 * (g % 16))) & 15u;
		__global const float *f = x + 4 * g;
		float s = 0, t = 0;
		for (int b = 3; b >= 0; b--) {
			t += f[b];
			if (nib >> b & 1u)
				s += f[b];
		}
		p[g & 3] += s;
		a[g & 3] += t;
	}
	float pos = (p[0] + p[1]) + (p[2] + p[3]);
	float all = (a[0] + a[1]) + (a[2] + a[3]);
	float dot = 2.0f * pos - all;
	out[j] = qnorm[pq[j]] * dot;
}
