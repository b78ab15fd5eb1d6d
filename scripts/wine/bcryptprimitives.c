/*
 * Test-only stand-in for bcryptprimitives.dll under Wine; it never ships.
 *
 * Rust's std (1.78+) takes its random seeds from ProcessPrng in bcryptprimitives.dll, which
 * Wine 8.0 (Debian 12) does not have, so every Rust .exe fails to load there. The test harness
 * (scripts/test-windows.sh) builds this file into a DLL beside the .exe files, where the loader
 * looks first. Real Windows (10 and later) has the real DLL and never sees this one.
 */
#include <windows.h>

/* advapi32's RtlGenRandom, exported as SystemFunction036 (Wine has it). */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* Same contract as the real one: fills the buffer, always succeeds (TRUE). */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* RtlGenRandom takes a 32-bit length: fill larger requests in pieces. */
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
