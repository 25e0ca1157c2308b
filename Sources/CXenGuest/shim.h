// The Xen libraries a guest has (Debian's libxenstore4, libxenevtchn1 and
// libxengnttab1; headers in libxen-dev): xenstore, event channels, grant
// tables. Only XenGuest imports this module, `internal`, so the public API
// never names a Xen type, and nothing a guest program links needs dom0's
// libxenctrl or libxenforeignmemory (module CXen).
#ifndef SECURE_CHANNEL_CXEN_GUEST_SHIM_H
#define SECURE_CHANNEL_CXEN_GUEST_SHIM_H
// xen/xen.h, which these headers include, is defined once, here, for both
// modules (CXen imports this one): with the tools' declarations xenctrl.h
// asks for, since its include guard keeps it from being read again.
// Declarations only; nothing more is linked.
#ifndef __XEN_TOOLS__
#define __XEN_TOOLS__ 1
#endif
#include <xenstore.h>
#include <xenevtchn.h>
#include <xengnttab.h>
#endif
