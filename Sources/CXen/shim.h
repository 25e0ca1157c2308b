// dom0's Xen libraries (Debian's libxen-dev, Xen 4.17): libxenctrl and
// libxenforeignmemory, which come with the toolstack and which a guest does
// not have (the guest's are in CXenGuest). Only XenBackend imports this
// module, `internal`, so the public API never names a Xen type.
#ifndef SECURE_CHANNEL_CXEN_SHIM_H
#define SECURE_CHANNEL_CXEN_SHIM_H
// The guest's module first: its headers define Xen's public structures
// (xen/xen.h), and a module that defined them again beside it would not
// merge with it (clang refuses the anonymous unions of cpu_user_regs). With
// CXenGuest's module map loaded this include is an import of that module,
// whose include guards then keep xenctrl.h from defining them twice.
#include "../CXenGuest/shim.h"
#include <xenctrl.h>
#include <xenforeignmemory.h>
#endif
