import AirlockProtocol
import CWSMan

// The host callbacks of the plug-in API (`winrm-plugin-api.md` §3), exported under their
// C names from the `airlock-worker` executable (see `Sources/airlock-worker/exports.list`)
// so that a plug-in loaded with `dlopen` resolves them. Each one treats the request
// pointer it gets as a key into the worker's table of live requests and never
// dereferences a pointer it did not hand out. Signatures follow `<wsman.h>`.

/// `WSManPluginReportContext`: the context of a Shell or Command request.
@_cdecl("WSManPluginReportContext")
public func airlockReportContext(_ requestDetails: UnsafeMutablePointer<WSMAN_PLUGIN_REQUEST>?, _ flags: UInt32, _ context: UnsafeMutableRawPointer?) -> UInt32 {
    PluginHost.current?.reportContext(requestDetails, flags: flags, context: context) ?? WSManError.invalidParameter
}

/// `WSManPluginReceiveResult`: one piece of a Receive's output. Blocks while the
/// operation's output window is full.
@_cdecl("WSManPluginReceiveResult")
public func airlockReceiveResult(
    _ requestDetails: UnsafeMutablePointer<WSMAN_PLUGIN_REQUEST>?, _ flags: UInt32, _ stream: UnsafePointer<UInt16>?,
    _ streamResult: UnsafeMutablePointer<WSMAN_DATA>?, _ commandState: UnsafePointer<UInt16>?, _ exitCode: UInt32
) -> UInt32 {
    PluginHost.current?.receiveResult(
        requestDetails, flags: flags, stream: stream, streamResult: streamResult, commandState: commandState, exitCode: exitCode)
        ?? WSManError.invalidParameter
}

/// `WSManPluginOperationComplete`: ends an operation, exactly once.
@_cdecl("WSManPluginOperationComplete")
public func airlockOperationComplete(
    _ requestDetails: UnsafeMutablePointer<WSMAN_PLUGIN_REQUEST>?, _ flags: UInt32, _ errorCode: UInt32,
    _ extendedInformation: UnsafePointer<UInt16>?
) -> UInt32 {
    PluginHost.current?.operationComplete(requestDetails, flags: flags, errorCode: errorCode, extendedInformation: extendedInformation)
        ?? WSManError.invalidParameter
}

/// `WSManPluginGetOperationParameters`: timeout, envelope and result sizes, locales.
@_cdecl("WSManPluginGetOperationParameters")
public func airlockGetOperationParameters(_ requestDetails: UnsafeMutablePointer<WSMAN_PLUGIN_REQUEST>?, _ flags: UInt32, _ data: UnsafeMutablePointer<WSMAN_DATA>?) -> UInt32 {
    PluginHost.current?.getOperationParameters(requestDetails, flags: flags, data: data) ?? WSManError.invalidParameter
}

/// `WSManPluginGetConfiguration`: the plug-in's registration settings.
@_cdecl("WSManPluginGetConfiguration")
public func airlockGetConfiguration(_ pluginContext: UnsafeMutableRawPointer?, _ flags: UInt32, _ data: UnsafeMutablePointer<WSMAN_DATA>?) -> UInt32 {
    PluginHost.current?.getConfiguration(pluginContext, flags: flags, data: data) ?? WSManError.invalidParameter
}

/// `WSManPluginReportCompletion`: the plug-in may be shut down.
@_cdecl("WSManPluginReportCompletion")
public func airlockReportCompletion(_ pluginContext: UnsafeMutableRawPointer?, _ flags: UInt32) -> UInt32 {
    PluginHost.current?.reportCompletion(pluginContext, flags: flags) ?? WSManError.invalidParameter
}

/// `WSManPluginFreeRequestDetails`: the plug-in is done reading the request's fields.
@_cdecl("WSManPluginFreeRequestDetails")
public func airlockFreeRequestDetails(_ requestDetails: UnsafeMutablePointer<WSMAN_PLUGIN_REQUEST>?) -> UInt32 {
    PluginHost.current?.freeRequestDetails(requestDetails) ?? WSManError.invalidParameter
}

/// `WSManPluginRegisterShutdownCallback` (PowerShell's Linux addition): a function to
/// call when the request is cancelled.
@_cdecl("WSManPluginRegisterShutdownCallback")
public func airlockRegisterShutdownCallback(
    _ requestDetails: UnsafeMutablePointer<WSMAN_PLUGIN_REQUEST>?,
    _ shutdownCallback: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?,
    _ shutdownContext: UnsafeMutableRawPointer?
) {
    PluginHost.current?.registerShutdownCallback(requestDetails, callback: shutdownCallback, context: shutdownContext)
}
