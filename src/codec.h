/* codec: zstd compression of stored bytes (--compress). A leader's spooled
 * output is compressed into a file of its own before it is stored; a hit's
 * bytes are decompressed as they stream to the caller, so neither side holds
 * a value whole. Each stream (stdout, stderr) is one zstd frame with its
 * content checksum, so damage shows at the latest at the frame's end. */
#ifndef CACHEFENCE_CODEC_H
#define CACHEFENCE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* the codec name an entry's "z" field gives (entry.h) */
#define CODEC_ZSTD "zstd"

/* compress len bytes of in_fd, from its current offset, into out_fd as one
 * frame; *out_len gets the frame's size. 0, or -1 with err_set() */
int codec_compress(int in_fd, uint64_t len, int out_fd, uint64_t *out_len);

/* a streaming decoder of one frame at a time */
struct codec_dec;

/* receives decompressed bytes */
typedef void (*codec_out_fn)(void *ctx, const void *p, size_t n);

/* a new decoder (codec_dec_free), NULL with err_set() when out of memory */
struct codec_dec *codec_dec_new(void);
void codec_dec_free(struct codec_dec *d);
/* start a new frame (the next stream) */
void codec_dec_reset(struct codec_dec *d);
/* feed n compressed bytes, handing what they decompress to out; 0, or -1
 * with err_set() for bytes that are not (part of) a valid frame: the
 * decoder then takes nothing more */
int codec_dec_feed(struct codec_dec *d, const void *p, size_t n, codec_out_fn out, void *ctx);
/* 0 when the frame fed so far is complete (its checksum checked), or no
 * byte was fed (an empty stream is stored as no frame at all); else -1 with
 * err_set() */
int codec_dec_end(struct codec_dec *d);

#endif
