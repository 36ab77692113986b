/* file_tags: the local store's tags. tag-SHA256(T) lists the keys filed
 * under tag T, one record each (records.h), appended under the commit lock;
 * tagname-SHA256(T) keeps T itself for list --tags (a digest names no tag). */
#ifndef CACHEFENCE_FILE_TAGS_H
#define CACHEFENCE_FILE_TAGS_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

struct file_store;

/* File the result r of key under each of its tags, under the commit lock,
 * before the entry appears; 0, or -1 with err_set() */
int file_tags(struct file_store *fs, const struct result *r, const char *key, size_t key_len);

/* the store's invalidate --tag: fence, then invalidate every key filed
 * under tag; how many entries were deleted, or -1 with err_set() */
long file_invalidate_tag(struct store *s, const char *tag);

/* the store's list --tags: fn for each tag whose name matches glob (NULL:
 * all); 0 or -1 */
int file_list_tags(struct store *s, const char *glob, tag_fn fn, void *ctx);

/* does the tag file of the tag name file tagname-H exist? (true when that
 * cannot be told) */
bool tag_file_of_name_exists(struct file_store *fs, const char *tag_name_file);

#endif
