/* crc16: the checksum Redis Cluster hashes keys with (CRC-16/XMODEM:
 * polynomial 0x1021, initial value 0, no reflection), shared by the
 * routing code and the build-time generator of slot tags. */
#ifndef CACHEFENCE_CRC16_H
#define CACHEFENCE_CRC16_H

#include <stddef.h>
#include <stdint.h>

/* the CRC-16/XMODEM of the n bytes at p ("123456789" gives 0x31c3) */
uint16_t crc16(const void *p, size_t n);

#endif
