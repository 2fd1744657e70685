// Kernels of a bf16 decoding step on AVX512-BF16 CPUs (native.py compiles and loads them).
//
// decode_attention: one decoding step of shared-prefix attention. For each query row r and key/value
// head h, the G queries of that head (grouped-query attention) attend to the prompt's keys (stored
// once per prompt, left padding masked by an additive bias) and then to the row's generated keys
// (chunked: [chunks, rows, heads, chunk, dim], positions < length). One pass with an online softmax
// (FlashAttention's running max and sum) in fp32; the scores are bf16 x bf16 dot products accumulated
// in fp32 (vdpbf16ps: exact products), the probabilities stay fp32 against values widened to fp32,
// and the output is rounded to bf16 once (nearest even).
// rms_norm, silu_mul, rotary: transformers' Llama RMSNorm, SiLU(gate) * up and rotary embedding in one
// pass each, with the eager ops' roundings to bf16 (only the order of the variance's sum and SiLU's
// formula differ; the rotary embedding is bit for bit).
// Work is split over OpenMP threads; the caller passes torch's thread count.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

constexpr int BLOCK = 16;  // positions per softmax block: one vector of scores

inline __m512 widen(const uint16_t* p) {  // 16 bf16 -> 16 fp32
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}

// e^x for x <= 0, exactly 0 below -87 (masked positions): x = n ln2 + r with |r| <= ln2 / 2 and a
// degree-6 polynomial for e^r (Cephes' expf, ~1 ulp).
inline __m512 exp_nonpositive(__m512 x0) {
  const __m512 x = _mm512_max_ps(x0, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i two_n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  const __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(two_n));
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x0, _mm512_set1_ps(-87.0f), _CMP_GE_OQ), y);
}

// The running softmax of G queries of one head (dimension D) over blocks of keys and values.
template <int D, int G>
struct Attention {
  static constexpr int V = D / 16;  // fp32 vectors per output row
  __m512 acc[G][V];
  float max[G], sum[G];
  __m512bh query[G][D / 32];

  explicit Attention(const uint16_t* q) {
    for (int g = 0; g < G; ++g) {
      for (int i = 0; i < V; ++i) acc[g][i] = _mm512_setzero_ps();
      for (int i = 0; i < D / 32; ++i) query[g][i] = (__m512bh)_mm512_loadu_si512(q + g * D + 32 * i);
      max[g] = -1e30f;  // finite: a fully masked block leaves the state as it was
      sum[g] = 0.0f;
    }
  }

  // n <= BLOCK consecutive positions, D elements apart; bias: additive, per position (nullable).
  void block(const uint16_t* k, const uint16_t* v, int n, const float* bias, float scale) {
    alignas(64) float p[G][BLOCK];
    for (int j = 0; j < n; ++j) {
      const uint16_t* kj = k + j * D;
      __m512bh key[D / 32];
      for (int i = 0; i < D / 32; ++i) key[i] = (__m512bh)_mm512_loadu_si512(kj + 32 * i);
      for (int g = 0; g < G; ++g) {
        __m512 dot = _mm512_dpbf16_ps(_mm512_setzero_ps(), query[g][0], key[0]);
        for (int i = 1; i < D / 32; ++i) dot = _mm512_dpbf16_ps(dot, query[g][i], key[i]);
        p[g][j] = _mm512_reduce_add_ps(dot);
      }
    }
    const __mmask16 valid = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(valid, bias) : _mm512_setzero_ps();
    for (int g = 0; g < G; ++g) {
      __m512 s = _mm512_fmadd_ps(_mm512_load_ps(p[g]), _mm512_set1_ps(scale), b);
      s = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid, s);  // lanes past n: weight 0 whatever the rest
      const float top = std::max(max[g], _mm512_reduce_max_ps(s));
      const __m512 e = exp_nonpositive(_mm512_sub_ps(s, _mm512_set1_ps(top)));
      const float rescale = _mm512_cvtss_f32(exp_nonpositive(_mm512_set1_ps(max[g] - top)));
      sum[g] = sum[g] * rescale + _mm512_reduce_add_ps(e);
      max[g] = top;
      if (rescale != 1.0f)
        for (int i = 0; i < V; ++i) acc[g][i] = _mm512_mul_ps(acc[g][i], _mm512_set1_ps(rescale));
      _mm512_store_ps(p[g], e);
    }
    for (int j = 0; j < n; ++j) {
      __m512 value[V];
      for (int i = 0; i < V; ++i) value[i] = widen(v + j * D + 16 * i);
      for (int g = 0; g < G; ++g) {
        const __m512 e = _mm512_set1_ps(p[g][j]);
        for (int i = 0; i < V; ++i) acc[g][i] = _mm512_fmadd_ps(e, value[i], acc[g][i]);
      }
    }
  }

  void store(uint16_t* out) const {
    for (int g = 0; g < G; ++g) {
      const __m512 inv = _mm512_set1_ps(1.0f / sum[g]);
      for (int i = 0; i < V; ++i)
        _mm256_storeu_si256((__m256i*)(out + g * D + 16 * i), (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(acc[g][i], inv)));
    }
  }
};

struct Args {
  const uint16_t* query;      // [rows, heads, G, D]
  const int64_t* prompt_of;   // [rows]: the prompt of each query row
  const int64_t* cache_row;   // [rows]: its row in the generated cache
  int64_t rows, heads;
  const uint16_t* prompt_keys;  // [prompts, heads, prompt_len, D], contiguous
  const uint16_t* prompt_values;
  const float* prompt_bias;     // [prompts, prompt_len]: 0, or -inf for padding
  int64_t prompt_len;
  const uint16_t* keys;  // generated: element (c, row, h, j, d) at c*chunk_stride + row*row_stride + h*head_stride + j*D + d
  const uint16_t* values;
  int64_t chunk_stride, row_stride, head_stride, chunk, length;
  float scale;
  uint16_t* out;  // [rows, heads, G, D]
  int threads;
};

template <int D, int G>
void run(const Args& a) {
#pragma omp parallel for schedule(static) num_threads(a.threads)
  for (int64_t task = 0; task < a.rows * a.heads; ++task) {
    const int64_t r = task / a.heads, h = task % a.heads, p = a.prompt_of[r];
    Attention<D, G> att(a.query + task * G * D);
    if (task + 1 < a.rows * a.heads) {  // the next task's generated keys and values, into L2 while this one computes
      const int64_t next = a.cache_row[(task + 1) / a.heads] * a.row_stride + ((task + 1) % a.heads) * a.head_stride;
      for (int64_t c = 0; c * a.chunk < a.length; ++c) {
        const int64_t bytes = std::min(a.chunk, a.length - c * a.chunk) * D * 2, at = next + c * a.chunk_stride;
        for (int64_t line = 0; line < bytes; line += 64) {
          _mm_prefetch((const char*)(a.keys + at) + line, _MM_HINT_T1);
          _mm_prefetch((const char*)(a.values + at) + line, _MM_HINT_T1);
        }
      }
    }
    const int64_t prompt = (p * a.heads + h) * a.prompt_len * D;
    for (int64_t j = 0; j < a.prompt_len; j += BLOCK)
      att.block(a.prompt_keys + prompt + j * D, a.prompt_values + prompt + j * D,
                int(std::min<int64_t>(BLOCK, a.prompt_len - j)), a.prompt_bias + p * a.prompt_len + j, a.scale);
    const int64_t base = a.cache_row[r] * a.row_stride + h * a.head_stride;
    for (int64_t c = 0; c * a.chunk < a.length; ++c) {
      const int64_t filled = std::min(a.chunk, a.length - c * a.chunk), at = base + c * a.chunk_stride;
      for (int64_t j = 0; j < filled; j += BLOCK)
        att.block(a.keys + at + j * D, a.values + at + j * D, int(std::min<int64_t>(BLOCK, filled - j)), nullptr, a.scale);
    }
    att.store(a.out + task * G * D);
  }
}

template <int D>
int dispatch_groups(const Args& a, int64_t groups) {
  switch (groups) {
    case 1: run<D, 1>(a); return 0;
    case 2: run<D, 2>(a); return 0;
    case 3: run<D, 3>(a); return 0;
    case 4: run<D, 4>(a); return 0;
    case 5: run<D, 5>(a); return 0;
    case 6: run<D, 6>(a); return 0;
    case 7: run<D, 7>(a); return 0;
    case 8: run<D, 8>(a); return 0;
    default: return 1;
  }
}

inline __m512 widen_masked(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
inline void store_bf16(uint16_t* p, __m512 x, __mmask16 m) { _mm256_mask_storeu_epi16(p, m, (__m256i)_mm512_cvtneps_pbh(x)); }
inline __m512 round_bf16(__m512 x) {  // to bf16 and back: the rounding of an eager bf16 op's output
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x)), 16));
}
inline __mmask16 tail(int64_t i, int64_t n) { return n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1); }

}  // namespace

extern "C" {

// out[r] = weight * bf16(x[r] * rsqrt(mean(x[r]^2) + eps)), rounded to bf16 (x rows `stride` apart).
void rms_norm(const uint16_t* x, int64_t rows, int64_t dim, int64_t stride, const uint16_t* weight, float eps,
              uint16_t* out, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (rows * dim >= 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* xr = x + r * stride;
    __m512 squares = _mm512_setzero_ps();
    for (int64_t i = 0; i < dim; i += 16) {
      const __m512 v = widen_masked(xr + i, tail(i, dim));
      squares = _mm512_fmadd_ps(v, v, squares);
    }
    const __m512 scale = _mm512_set1_ps(1.0f / std::sqrt(_mm512_reduce_add_ps(squares) / float(dim) + eps));
    for (int64_t i = 0; i < dim; i += 16) {
      const __mmask16 m = tail(i, dim);
      const __m512 h = round_bf16(_mm512_mul_ps(widen_masked(xr + i, m), scale));
      store_bf16(out + r * dim + i, _mm512_mul_ps(widen_masked(weight + i, m), h), m);
    }
  }
}

// out[r] = bf16(bf16(silu(gate[r])) * up[r]) (gate and up rows `gate_stride` / `up_stride` apart).
void silu_mul(const uint16_t* gate, int64_t gate_stride, const uint16_t* up, int64_t up_stride, int64_t rows,
              int64_t dim, uint16_t* out, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (rows * dim >= 65536)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; i += 16) {
      const __mmask16 m = tail(i, dim);
      const __m512 g = widen_masked(gate + r * gate_stride + i, m);
      // silu(g) = g / (1 + e^-g) for g >= 0, g e^g / (1 + e^g) below: e^-|g| never overflows.
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(g)));
      const __mmask16 negative = _mm512_cmp_ps_mask(g, _mm512_setzero_ps(), _CMP_LT_OQ);
      const __m512 numerator = _mm512_mask_mul_ps(g, negative, g, e);
      const __m512 silu = round_bf16(_mm512_div_ps(numerator, _mm512_add_ps(_mm512_set1_ps(1.0f), e)));
      store_bf16(out + r * dim + i, _mm512_mul_ps(silu, widen_masked(up + r * up_stride + i, m)), m);
    }
  }
}


// Whether (head_dim, groups) has a compiled variant: the Python side asks before using the kernel.
// transformers' rotary embedding of one tensor: out = x * cos + rotate_half(x) * sin with the eager
// ops' roundings to bf16 (each product, then the sum). x[b, h, s, :] at b*xb + h*xh + s*xs; cos and
// sin [b, s, :] at b*cb + s*cs; out [b, s, h, :] contiguous. dim: a multiple of 32.
void rotary(const uint16_t* x, int64_t batch, int64_t heads, int64_t seq, int64_t dim, int64_t xb, int64_t xh,
            int64_t xs, const uint16_t* cos, const uint16_t* sin, int64_t cb, int64_t cs, uint16_t* out,
            int threads) {
  const int64_t half = dim / 2;
#pragma omp parallel for schedule(static) num_threads(threads) if (batch * seq * heads * dim >= 65536)
  for (int64_t task = 0; task < batch * seq * heads; ++task) {
    const int64_t b = task / (seq * heads), s = task / heads % seq, h = task % heads;
    const uint16_t* xr = x + b * xb + h * xh + s * xs;
    const uint16_t *c = cos + b * cb + s * cs, *sn = sin + b * cb + s * cs;
    uint16_t* o = out + task * dim;
    for (int64_t i = 0; i < half; i += 16) {
      const __m512 x1 = widen(xr + i), x2 = widen(xr + half + i);
      const __m512 first = _mm512_add_ps(round_bf16(_mm512_mul_ps(x1, widen(c + i))),
                                         round_bf16(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), x2), widen(sn + i))));
      const __m512 second = _mm512_add_ps(round_bf16(_mm512_mul_ps(x2, widen(c + half + i))),
                                          round_bf16(_mm512_mul_ps(x1, widen(sn + half + i))));
      store_bf16(o + i, first, 0xffff);
      store_bf16(o + half + i, second, 0xffff);
    }
  }
}

int decode_attention_supports(int64_t head_dim, int64_t groups) {
  return (head_dim == 64 || head_dim == 128) && groups >= 1 && groups <= 8;
}

// Returns 0, or 1 for an unsupported (head_dim, groups).
int decode_attention(const uint16_t* query, const int64_t* prompt_of, const int64_t* cache_row, int64_t rows,
                     int64_t heads, int64_t groups, int64_t head_dim, const uint16_t* prompt_keys,
                     const uint16_t* prompt_values, const float* prompt_bias, int64_t prompt_len, const uint16_t* keys,
                     const uint16_t* values, int64_t chunk_stride, int64_t row_stride, int64_t head_stride, int64_t chunk,
                     int64_t length, float scale, uint16_t* out, int threads) {
  const Args a{query, prompt_of, cache_row, rows, heads, prompt_keys, prompt_values, prompt_bias, prompt_len, keys,
               values, chunk_stride, row_stride, head_stride, chunk, length, scale, out, threads};
  if (head_dim == 64) return dispatch_groups<64>(a, groups);
  if (head_dim == 128) return dispatch_groups<128>(a, groups);
  return 1;
}

}  // extern "C"
