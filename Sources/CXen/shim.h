// Xen's user-space control libraries (Debian's libxen-dev, Xen 4.17).
// Only XenBackend imports this module, `internal`, so the public API never
// names a Xen type.
#ifndef SECURE_CHANNEL_CXEN_SHIM_H
#define SECURE_CHANNEL_CXEN_SHIM_H
#include <xenctrl.h>
#include <xenstore.h>
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenforeignmemory.h>
#endif
