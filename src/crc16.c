/* crc16: CRC-16/XMODEM, a byte at a time through a table built at compile
 * time from the polynomial (see crc16.h). */
#include "crc16.h"

/* the table entry of byte b: its CRC with the polynomial 0x1021 */
#define R(c) ((uint16_t)(((c)&0x8000) ? ((c) << 1) ^ 0x1021 : (c) << 1))
#define E(b) R(R(R(R(R(R(R(R((uint16_t)((b) << 8)))))))))
#define E4(b) E(b), E((b) + 1), E((b) + 2), E((b) + 3)
#define E16(b) E4(b), E4((b) + 4), E4((b) + 8), E4((b) + 12)
#define E64(b) E16(b), E16((b) + 16), E16((b) + 32), E16((b) + 48)

static const uint16_t table[256] = {E64(0), E64(64), E64(128), E64(192)};

uint16_t crc16(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint16_t crc = 0;

	while (n--)
		crc = (uint16_t)(crc << 8) ^ table[((crc >> 8) ^ *b++) & 0xff];
	return crc;
}
