/* file_dir: the local store's directory and the names in it. The directory
 * is opened only when it is private: ours, writable by nobody else, and no
 * symbolic link; the namespace directory inside it likewise. Only hex
 * digests and fixed words make up the names, so no key, tag or namespace
 * can name another's file, whatever bytes it holds. */
#ifndef CACHEFENCE_FILE_DIR_H
#define CACHEFENCE_FILE_DIR_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>

#include "key.h"
#include "store.h"

struct buf;
struct file_store;

/* a file name of one of a key's parts: H, '.', TOKEN, a suffix */
#define NAME_MAX_LEN (KEY_HASH_HEX + TOKEN_LEN + 16)

/* open the store directory path (created if missing) and its namespace
 * subdirectory ns, both private; the namespace directory's descriptor,
 * with its path in *ns_path, or -1 with err_set() (and *refused set when
 * the directory is unsafe, so that retrying cannot help) */
int open_store_dir(const char *path, const char *ns, char **ns_path, bool *refused);

/* the file name of one of key's parts: H + suffix */
void file_name(char *out, size_t outlen, const char *key, size_t len, const char *suffix);

/* the file name of one of key's parts that belongs to a round: H.TOKEN + suffix */
void round_name(char *out, size_t outlen, const char *key, size_t len, const char *token,
		const char *suffix);

/* true if the n bytes at p are lowercase hex digits */
bool is_hex(const char *p, size_t n);

/* true if the name s ends with suffix */
bool ends_with(const char *s, const char *suffix);

/* Write the n bytes at p to name in the store directory, whole or not at
 * all: into tmp first (a name no other writer uses at the same time),
 * renamed into place. Best effort: 0, or -1 with name left as it was. */
int replace_file(struct file_store *fs, const char *name, const char *tmp, const void *p, size_t n);

/* read the whole small file name into b; 0, 1 when absent, -1 with err_set() */
int read_small_file(struct file_store *fs, const char *name, struct buf *b);

/* Call fn with each name in the store directory, from its start, until fn
 * returns non-zero; fn's last return, or -1 with err_set() when the
 * directory cannot be read. */
int store_each(struct file_store *fs, int (*fn)(struct file_store *fs, const char *name, void *ctx),
	       void *ctx);

#endif
