import Altp2m

/// The libraries dom0's backend (`XenControl`) uses, opened together.
public struct XenHostLibraries {
    public var control: any XenControlLibrary
    public var store: any XenStoreLibrary
    public var foreignMemory: any XenForeignMemoryLibrary

    public init(control: any XenControlLibrary, store: any XenStoreLibrary,
                foreignMemory: any XenForeignMemoryLibrary) {
        self.control = control
        self.store = store
        self.foreignMemory = foreignMemory
    }
}

/// What a guest agent's backend (`XenGuestPlatform`, `XenFrameFlowAgent`)
/// uses: only what a guest has (no dom0 library).
public struct XenGuestLibraries {
    public var store: any XenStoreLibrary
    /// The handle the platform itself holds (its descriptor watch's partner
    /// in every wait is per channel: see ``openEventChannel``).
    public var events: any XenEventChannelLibrary
    public var hardware: any XenGuestHardware
    public var grantShare: any XenGrantShareLibrary
    public var grantTable: any XenGrantTableLibrary
    /// `xenevtchn_open` again: a handle of its own for each channel, so a
    /// port fires only the file descriptor its channel waits on, and one
    /// channel's waiter never takes (or blocks reading) another's event.
    public var openEventChannel: () throws(XenErrno) -> any XenEventChannelLibrary

    public init(store: any XenStoreLibrary, events: any XenEventChannelLibrary, hardware: any XenGuestHardware,
                grantShare: any XenGrantShareLibrary, grantTable: any XenGrantTableLibrary,
                openEventChannel: @escaping () throws(XenErrno) -> any XenEventChannelLibrary) {
        self.store = store
        self.events = events
        self.hardware = hardware
        self.grantShare = grantShare
        self.grantTable = grantTable
        self.openEventChannel = openEventChannel
    }
}
