// The plug-in ABI: <wsman.h> must give every structure its Win64 layout and every
// constant its documented value (winrm-plugin-api.md §4, §5), and a plug-in written for
// the documented API must build out of tree with a plain `cc` one-liner.

import CWSMan
import Foundation
import Testing

// MARK: - Layouts

/// The offset of a stored field, or -1 when the key path is not a stored property.
private func offset<Root, Value>(_ path: KeyPath<Root, Value>) -> Int {
    MemoryLayout<Root>.offset(of: path) ?? -1
}

@Suite("wsman.h layouts")
struct LayoutTests {
    @Test func windowsTypesKeepTheirWindowsSizes() {
        #expect(MemoryLayout<DWORD>.size == 4)
        #expect(DWORD.self == UInt32.self)
        #expect(MemoryLayout<BOOL>.size == 4)
        #expect(MemoryLayout<BYTE>.size == 1)
        #expect(MemoryLayout<WCHAR>.size == 2)
        #expect(MemoryLayout<HANDLE>.size == 8)
        #expect(MemoryLayout<PVOID>.size == 8)
        #expect(MemoryLayout<PCWSTR>.size == 8)
        #expect(MemoryLayout<WSManDataType>.size == 4)
    }

    @Test func dataLayouts() {
        #expect(MemoryLayout<WSMAN_DATA_TEXT>.stride == 16)
        #expect(offset(\WSMAN_DATA_TEXT.bufferLength) == 0)
        #expect(offset(\WSMAN_DATA_TEXT.buffer) == 8)
        #expect(MemoryLayout<WSMAN_DATA_BINARY>.stride == 16)
        #expect(offset(\WSMAN_DATA_BINARY.dataLength) == 0)
        #expect(offset(\WSMAN_DATA_BINARY.data) == 8)
        #expect(MemoryLayout<WSMAN_DATA>.size == 24)
        #expect(MemoryLayout<WSMAN_DATA>.stride == 24)
        #expect(offset(\WSMAN_DATA.type) == 0)
    }

    /// The anonymous union of WSMAN_DATA is imported as computed properties, so its
    /// placement is checked through the bytes: it starts at offset 8.
    @Test func dataUnionStartsAtOffsetEight() {
        var data = WSMAN_DATA()
        data.type = WSMAN_DATA_TYPE_BINARY
        data.binaryData.dataLength = 0x1122_3344
        data.binaryData.data = UnsafeMutablePointer<BYTE>(bitPattern: 0x0102_0304_0506_0708)
        let (length, pointer, type) = withUnsafeBytes(of: &data) { bytes in
            (bytes.load(fromByteOffset: 8, as: UInt32.self),
             bytes.load(fromByteOffset: 16, as: UInt64.self),
             bytes.load(fromByteOffset: 0, as: UInt32.self))
        }
        #expect(type == 2)
        #expect(length == 0x1122_3344)
        #expect(pointer == 0x0102_0304_0506_0708)

        data.type = WSMAN_DATA_TYPE_DWORD
        data.number = 0xCAFE_F00D
        #expect(withUnsafeBytes(of: &data) { $0.load(fromByteOffset: 8, as: UInt32.self) } == 0xCAFE_F00D)
        #expect(data.binaryData.dataLength == 0xCAFE_F00D) // one union: the same bytes
    }

    @Test func operationInfoLayouts() {
        #expect(MemoryLayout<WSMAN_OPTION>.stride == 24)
        #expect(offset(\WSMAN_OPTION.name) == 0)
        #expect(offset(\WSMAN_OPTION.value) == 8)
        #expect(offset(\WSMAN_OPTION.mustComply) == 16)
        #expect(MemoryLayout<WSMAN_OPTION_SET>.stride == 24)
        #expect(offset(\WSMAN_OPTION_SET.optionsCount) == 0)
        #expect(offset(\WSMAN_OPTION_SET.options) == 8)
        #expect(offset(\WSMAN_OPTION_SET.optionsMustUnderstand) == 16)
        #expect(MemoryLayout<WSMAN_KEY>.stride == 16)
        #expect(offset(\WSMAN_KEY.key) == 0)
        #expect(offset(\WSMAN_KEY.value) == 8)
        #expect(MemoryLayout<WSMAN_SELECTOR_SET>.stride == 16)
        #expect(offset(\WSMAN_SELECTOR_SET.numberKeys) == 0)
        #expect(offset(\WSMAN_SELECTOR_SET.keys) == 8)
        #expect(MemoryLayout<WSMAN_FRAGMENT>.stride == 16)
        #expect(offset(\WSMAN_FRAGMENT.path) == 0)
        #expect(offset(\WSMAN_FRAGMENT.dialect) == 8)
        #expect(MemoryLayout<WSMAN_FILTER>.stride == 16)
        #expect(offset(\WSMAN_FILTER.filter) == 0)
        #expect(offset(\WSMAN_FILTER.dialect) == 8)
        #expect(MemoryLayout<WSMAN_OPERATION_INFO>.size == 88) // imported C structs keep their tail padding
        #expect(MemoryLayout<WSMAN_OPERATION_INFO>.stride == 88)
        #expect(offset(\WSMAN_OPERATION_INFO.fragment) == 0)
        #expect(offset(\WSMAN_OPERATION_INFO.filter) == 16)
        #expect(offset(\WSMAN_OPERATION_INFO.selectorSet) == 32)
        #expect(offset(\WSMAN_OPERATION_INFO.optionSet) == 48)
        #expect(offset(\WSMAN_OPERATION_INFO.reserved) == 72)
        #expect(offset(\WSMAN_OPERATION_INFO.version) == 80)
    }

    @Test func shellAndCommandLayouts() {
        #expect(MemoryLayout<WSMAN_STREAM_ID_SET>.stride == 16)
        #expect(offset(\WSMAN_STREAM_ID_SET.streamIDsCount) == 0)
        #expect(offset(\WSMAN_STREAM_ID_SET.streamIDs) == 8)
        #expect(MemoryLayout<WSMAN_ENVIRONMENT_VARIABLE>.stride == 16)
        #expect(offset(\WSMAN_ENVIRONMENT_VARIABLE.name) == 0)
        #expect(offset(\WSMAN_ENVIRONMENT_VARIABLE.value) == 8)
        #expect(MemoryLayout<WSMAN_ENVIRONMENT_VARIABLE_SET>.stride == 16)
        #expect(offset(\WSMAN_ENVIRONMENT_VARIABLE_SET.varsCount) == 0)
        #expect(offset(\WSMAN_ENVIRONMENT_VARIABLE_SET.vars) == 8)

        #expect(MemoryLayout<WSMAN_SHELL_STARTUP_INFO_V10>.stride == 40)
        #expect(offset(\WSMAN_SHELL_STARTUP_INFO_V10.inputStreamSet) == 0)
        #expect(offset(\WSMAN_SHELL_STARTUP_INFO_V10.outputStreamSet) == 8)
        #expect(offset(\WSMAN_SHELL_STARTUP_INFO_V10.idleTimeoutMs) == 16)
        #expect(offset(\WSMAN_SHELL_STARTUP_INFO_V10.workingDirectory) == 24)
        #expect(offset(\WSMAN_SHELL_STARTUP_INFO_V10.variableSet) == 32)
        #expect(MemoryLayout<WSMAN_SHELL_STARTUP_INFO_V11>.stride == 48)
        #expect(offset(\WSMAN_SHELL_STARTUP_INFO_V11.inputStreamSet) == 0)
        #expect(offset(\WSMAN_SHELL_STARTUP_INFO_V11.outputStreamSet) == 8)
        #expect(offset(\WSMAN_SHELL_STARTUP_INFO_V11.idleTimeoutMs) == 16)
        #expect(offset(\WSMAN_SHELL_STARTUP_INFO_V11.workingDirectory) == 24)
        #expect(offset(\WSMAN_SHELL_STARTUP_INFO_V11.variableSet) == 32)
        #expect(offset(\WSMAN_SHELL_STARTUP_INFO_V11.name) == 40)
        // Swift sees API version 1.1.
        #expect(WSMAN_SHELL_STARTUP_INFO.self == WSMAN_SHELL_STARTUP_INFO_V11.self)
        #expect(MemoryLayout<WSMAN_SHELL_DISCONNECT_INFO>.size == 4)

        #expect(MemoryLayout<WSMAN_COMMAND_ARG_SET>.stride == 16)
        #expect(offset(\WSMAN_COMMAND_ARG_SET.argsCount) == 0)
        #expect(offset(\WSMAN_COMMAND_ARG_SET.args) == 8)
    }

    @Test func requestLayouts() {
        #expect(MemoryLayout<WSMAN_CERTIFICATE_DETAILS>.stride == 32)
        #expect(offset(\WSMAN_CERTIFICATE_DETAILS.subject) == 0)
        #expect(offset(\WSMAN_CERTIFICATE_DETAILS.issuerName) == 8)
        #expect(offset(\WSMAN_CERTIFICATE_DETAILS.issuerThumbprint) == 16)
        #expect(offset(\WSMAN_CERTIFICATE_DETAILS.subjectName) == 24)

        #expect(MemoryLayout<WSMAN_SENDER_DETAILS>.stride == 40)
        #expect(offset(\WSMAN_SENDER_DETAILS.senderName) == 0)
        #expect(offset(\WSMAN_SENDER_DETAILS.authenticationMechanism) == 8)
        #expect(offset(\WSMAN_SENDER_DETAILS.certificateDetails) == 16)
        #expect(offset(\WSMAN_SENDER_DETAILS.clientToken) == 24)
        #expect(offset(\WSMAN_SENDER_DETAILS.httpURL) == 32)

        #expect(MemoryLayout<WSMAN_PLUGIN_REQUEST>.size == 56)
        #expect(MemoryLayout<WSMAN_PLUGIN_REQUEST>.stride == 56)
        #expect(offset(\WSMAN_PLUGIN_REQUEST.senderDetails) == 0)
        #expect(offset(\WSMAN_PLUGIN_REQUEST.locale) == 8)
        #expect(offset(\WSMAN_PLUGIN_REQUEST.resourceUri) == 16)
        #expect(offset(\WSMAN_PLUGIN_REQUEST.operationInfo) == 24)
        #expect(offset(\WSMAN_PLUGIN_REQUEST.shutdownNotification) == 32)
        #expect(offset(\WSMAN_PLUGIN_REQUEST.shutdownNotificationHandle) == 40)
        #expect(offset(\WSMAN_PLUGIN_REQUEST.dataLocale) == 48)
    }

    /// The handle carries an eventfd number; the helper reads it back, and -1 for none.
    @Test func shutdownNotificationHandleCarriesAFileDescriptor() {
        var request = WSMAN_PLUGIN_REQUEST()
        #expect(WSManPluginShutdownNotificationFd(&request) == -1)
        #expect(WSManPluginShutdownNotificationFd(nil) == -1)
        request.shutdownNotificationHandle = HANDLE(bitPattern: 7)
        #expect(WSManPluginShutdownNotificationFd(&request) == 7)
    }
}

// MARK: - Constants

@Suite("wsman.h constants")
struct ConstantTests {
    @Test func errorCodes() {
        let expected: [(DWORD, DWORD)] = [
            (NO_ERROR, 0), (ERROR_ACCESS_DENIED, 5), (ERROR_OUTOFMEMORY, 14),
            (ERROR_INVALID_PARAMETER, 87), (ERROR_INSUFFICIENT_BUFFER, 122),
            (ERROR_OPERATION_ABORTED, 995), (ERROR_SHUTDOWN_IN_PROGRESS, 1115),
            (ERROR_WSMAN_RESOURCE_NOT_FOUND, 0x8033_8000),
            (ERROR_WSMAN_PROVIDER_FAILURE, 0x8033_8003),
            (ERROR_WSMAN_OPERATION_TIMEDOUT, 0x8033_8029),
            (ERROR_WSMAN_INVALID_PARAMETER, 0x8033_803A),
            (ERROR_WSMAN_INVALID_RESOURCE_URI, 0x8033_803B),
            (ERROR_WSMAN_QUOTA_LIMIT, 0x8033_803F),
            (ERROR_WSMAN_MAX_ENVELOPE_SIZE_EXCEEDED, 0x8033_8048),
            (ERROR_WSMAN_INVALID_SELECTORS, 0x8033_805B),
            (ERROR_WSMAN_PLUGIN_FAILED, 0x8033_8083),
            (ERROR_WSMAN_PROVIDER_LOAD_FAILED, 0x8033_809A),
            (ERROR_WSMAN_SHELL_ALREADY_CLOSED, 0x8033_814A),
            (ERROR_WSMAN_COMMAND_ALREADY_CLOSED, 0x8033_814F),
            (ERROR_WSMAN_INVALID_PROVIDER_RESPONSE, 0x8033_816D),
            (ERROR_WSMAN_SHELL_NOT_INITIALIZED, 0x8033_816E),
            (ERROR_WSMAN_PLUGIN_CONFIGURATION_CORRUPTED, 0x8033_8190),
            (ERROR_WSMAN_FILE_NOT_PRESENT, 0x8033_8192),
            (ERROR_WSMAN_QUOTA_MAX_SHELLS, 0x8033_81A5),
            (ERROR_WSMAN_QUOTA_MAX_OPERATIONS, 0x8033_81A6),
            (ERROR_WSMAN_QUOTA_USER, 0x8033_81A7),
            (ERROR_WSMAN_COMMAND_TERMINATED, 0x8033_81CC),
            (ERROR_WSMAN_SERVICE_STREAM_DISCONNECTED, 0x8033_81DE),
            (ERROR_WSMAN_CREATESHELL_RUNAS_FAILED, 0x8033_81DF),
        ]
        for (actual, value) in expected {
            #expect(actual == value)
        }
    }

    @Test func flagsAndParameters() {
        #expect(WSMAN_FLAG_RECEIVE_RESULT_NO_MORE_DATA == 1)
        #expect(WSMAN_FLAG_RECEIVE_FLUSH == 2)
        #expect(WSMAN_FLAG_RECEIVE_RESULT_DATA_BOUNDARY == 4)
        #expect(WSMAN_FLAG_SEND_NO_MORE_DATA == 1)
        #expect(WSMAN_FLAG_REQUESTED_API_VERSION_1_0 == 0)
        #expect(WSMAN_FLAG_REQUESTED_API_VERSION_1_1 == 1)

        #expect(WSMAN_PLUGIN_PARAMS_MAX_ENVELOPE_SIZE == 1)
        #expect(WSMAN_PLUGIN_PARAMS_TIMEOUT == 2)
        #expect(WSMAN_PLUGIN_PARAMS_REMAINING_RESULT_SIZE == 3)
        #expect(WSMAN_PLUGIN_PARAMS_LARGEST_RESULT_SIZE == 4)
        #expect(WSMAN_PLUGIN_PARAMS_GET_REQUESTED_LOCALE == 5)
        #expect(WSMAN_PLUGIN_PARAMS_GET_REQUESTED_DATA_LOCALE == 6)

        #expect(WSMAN_PLUGIN_PARAMS_SHAREDHOST == 1)
        #expect(WSMAN_PLUGIN_PARAMS_RUNAS_USER == 2)
        #expect(WSMAN_PLUGIN_PARAMS_AUTORESTART == 3)
        #expect(WSMAN_PLUGIN_PARAMS_HOSTIDLETIMEOUTSECONDS == 4)
        #expect(WSMAN_PLUGIN_PARAMS_NAME == 5)

        #expect(WSMAN_PLUGIN_STARTUP_REQUEST_RECEIVED == 0)
        #expect(WSMAN_PLUGIN_STARTUP_AUTORESTARTED_REBOOT == 1)
        #expect(WSMAN_PLUGIN_STARTUP_AUTORESTARTED_CRASH == 2)
        #expect(WSMAN_PLUGIN_SHUTDOWN_SYSTEM == 1)
        #expect(WSMAN_PLUGIN_SHUTDOWN_SERVICE == 2)
        #expect(WSMAN_PLUGIN_SHUTDOWN_IISHOST == 3)
        #expect(WSMAN_PLUGIN_SHUTDOWN_IDLETIMEOUT_ELAPSED == 4)

        #expect(WSMAN_DEFAULT_TIMEOUT_MS == 60000)
        #expect(WSMAN_OPERATION_INFOV1 == 0)
        #expect(WSMAN_OPERATION_INFOV2 == 0xAABB_CCDD)
    }

    @Test func dataTypes() {
        #expect(WSMAN_DATA_NONE.rawValue == 0)
        #expect(WSMAN_DATA_TYPE_TEXT.rawValue == 1)
        #expect(WSMAN_DATA_TYPE_BINARY.rawValue == 2)
        #expect(WSMAN_DATA_TYPE_DWORD.rawValue == 4)
    }

    /// The UTF-16 string macros are not visible to Swift; a C program prints them (and
    /// its own view of the layouts, for both API versions).
    @Test(arguments: ["WSMAN_API_VERSION_1_0", "WSMAN_API_VERSION_1_1"])
    func stringsAndLayoutsSeenFromC(version: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = """
            #define \(version)
            #include <wsman.h>
            #include <stdio.h>
            static void show(const char *name, PCWSTR text) {
                printf("%s=", name);
                for (; *text != 0; text++) putchar(*text < 128 ? (int)*text : '?');
                putchar('\\n');
            }
            int main(void) {
                show("STDIN", WSMAN_STREAM_ID_STDIN);
                show("STDOUT", WSMAN_STREAM_ID_STDOUT);
                show("STDERR", WSMAN_STREAM_ID_STDERR);
                show("SHELL_NS", WSMAN_SHELL_NS);
                show("CMDSHELL_URI", WSMAN_CMDSHELL_URI);
                show("DONE", WSMAN_COMMAND_STATE_DONE);
                show("PENDING", WSMAN_COMMAND_STATE_PENDING);
                show("RUNNING", WSMAN_COMMAND_STATE_RUNNING);
                show("TERMINATE", WSMAN_SIGNAL_SHELL_CODE_TERMINATE);
                show("CTRL_C", WSMAN_SIGNAL_SHELL_CODE_CTRL_C);
                show("CTRL_BREAK", WSMAN_SIGNAL_SHELL_CODE_CTRL_BREAK);
                printf("sizeof_WCHAR=%zu\\n", sizeof(WCHAR));
                printf("sizeof_STARTUP_INFO=%zu\\n", sizeof(WSMAN_SHELL_STARTUP_INFO));
                printf("sizeof_REQUEST=%zu\\n", sizeof(WSMAN_PLUGIN_REQUEST));
                printf("sizeof_DATA=%zu\\n", sizeof(WSMAN_DATA));
                printf("sizeof_OPERATION_INFO=%zu\\n", sizeof(WSMAN_OPERATION_INFO));
                printf("offset_DATA_text=%zu\\n", offsetof(WSMAN_DATA, text));
                return 0;
            }
            """
        let program = try directory.write("strings.c", source)
        let executable = directory.path("strings")
        let compiled = try run("cc", ["-Wall", "-Werror", "-std=c11", "-I", SourceTree.includeDirectory, program, "-o", executable])
        #expect(compiled.status == 0, "\(compiled.output)")
        let output = try run(executable, []).output
        let shellNS = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
        let expected = [
            "STDIN=stdin", "STDOUT=stdout", "STDERR=stderr", "SHELL_NS=\(shellNS)",
            "CMDSHELL_URI=\(shellNS)/cmd", "DONE=\(shellNS)/CommandState/Done",
            "PENDING=\(shellNS)/CommandState/Pending", "RUNNING=\(shellNS)/CommandState/Running",
            "TERMINATE=\(shellNS)/signal/terminate", "CTRL_C=\(shellNS)/signal/ctrl_c",
            "CTRL_BREAK=\(shellNS)/signal/ctrl_break", "sizeof_WCHAR=2",
            "sizeof_STARTUP_INFO=\(version.hasSuffix("1_1") ? 48 : 40)", "sizeof_REQUEST=56",
            "sizeof_DATA=24", "sizeof_OPERATION_INFO=88", "offset_DATA_text=8",
        ]
        #expect(output.split(separator: "\n").map(String.init) == expected)
    }
}

// MARK: - Building plug-ins out of tree

/// The entry points a complete plug-in exports.
private let entryPoints = [
    "WSManPluginStartup", "WSManPluginShutdown", "WSManPluginShell", "WSManPluginCommand",
    "WSManPluginSend", "WSManPluginReceive", "WSManPluginSignal", "WSManPluginConnect",
    "WSManPluginReleaseShellContext", "WSManPluginReleaseCommandContext",
]

/// A plug-in written the way Microsoft documents it; `TEXT` is the literal prefix.
private func documentedPlugin(literal prefix: String) -> String {
    """
    #define WSMAN_API_VERSION_1_1
    #include <wsman.h>

    DWORD WINAPI WSManPluginStartup(DWORD flags, PCWSTR applicationIdentification, PCWSTR extraInfo, PVOID *pluginContext)
    { (void)flags; (void)applicationIdentification; (void)extraInfo; *pluginContext = (PVOID)1; return NO_ERROR; }
    DWORD WINAPI WSManPluginShutdown(PVOID pluginContext, DWORD flags, DWORD reason)
    { (void)pluginContext; (void)flags; return reason == WSMAN_PLUGIN_SHUTDOWN_SERVICE ? NO_ERROR : NO_ERROR; }
    VOID WINAPI WSManPluginShell(PVOID pluginContext, WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags,
                                 WSMAN_SHELL_STARTUP_INFO *startupInfo, WSMAN_DATA *inboundShellInformation)
    {
        (void)flags; (void)inboundShellInformation;
        PCWSTR name = startupInfo != NULL ? startupInfo->name : NULL;
        (void)name;
        WSManPluginReportContext(requestDetails, 0, pluginContext);
    }
    VOID WINAPI WSManPluginCommand(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                                   PCWSTR commandLine, WSMAN_COMMAND_ARG_SET *arguments)
    { (void)flags; (void)commandLine; (void)arguments; WSManPluginReportContext(requestDetails, 0, shellContext); }
    VOID WINAPI WSManPluginSend(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                                PVOID commandContext, PCWSTR stream, WSMAN_DATA *inboundData)
    {
        (void)shellContext; (void)commandContext; (void)stream; (void)inboundData;
        WSManPluginOperationComplete(requestDetails, 0, (flags & WSMAN_FLAG_SEND_NO_MORE_DATA) ? NO_ERROR : NO_ERROR, NULL);
    }
    VOID WINAPI WSManPluginReceive(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                                   PVOID commandContext, WSMAN_STREAM_ID_SET *streamSet)
    {
        (void)flags; (void)shellContext; (void)commandContext; (void)streamSet;
        static BYTE hello[] = "hello";
        WSMAN_DATA data;
        data.type = WSMAN_DATA_TYPE_BINARY;
        data.binaryData.dataLength = 5;
        data.binaryData.data = hello;
        WSManPluginReceiveResult(requestDetails, 0, WSMAN_STREAM_ID_STDOUT, &data, NULL, 0);
        WSManPluginReceiveResult(requestDetails, WSMAN_FLAG_RECEIVE_RESULT_NO_MORE_DATA, \(prefix)"stdout", NULL,
                                 WSMAN_COMMAND_STATE_DONE, 0);
        WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
    }
    VOID WINAPI WSManPluginSignal(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                                  PVOID commandContext, PCWSTR code)
    {
        (void)flags; (void)shellContext; (void)commandContext; (void)code;
        WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
    }
    VOID WINAPI WSManPluginConnect(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                                   PVOID commandContext, WSMAN_DATA *inboundConnectInformation)
    {
        (void)flags; (void)shellContext; (void)commandContext; (void)inboundConnectInformation;
        WSMAN_DATA timeout;
        if (WSManPluginGetOperationParameters(requestDetails, WSMAN_PLUGIN_PARAMS_TIMEOUT, &timeout) != NO_ERROR) {
            WSManPluginOperationComplete(requestDetails, 0, ERROR_WSMAN_PLUGIN_FAILED, \(prefix)"no timeout");
            return;
        }
        WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, \(prefix)"<ConnectResponse/>");
    }
    VOID WINAPI WSManPluginReleaseShellContext(PVOID shellContext) { (void)shellContext; }
    VOID WINAPI WSManPluginReleaseCommandContext(PVOID shellContext, PVOID commandContext)
    { (void)shellContext; (void)commandContext; }
    """
}

@Suite("Building plug-ins out of tree")
struct OutOfTreeBuildTests {
    /// `nm -D` of a shared object: defined (T) and undefined (U) dynamic symbols.
    private func dynamicSymbols(_ library: String) throws -> (defined: Set<String>, undefined: Set<String>) {
        let result = try run("nm", ["-D", library])
        #expect(result.status == 0, "\(result.output)")
        var defined = Set<String>(), undefined = Set<String>()
        for line in result.output.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard let name = fields.last.map(String.init), fields.count >= 2 else { continue }
            switch fields[fields.count - 2] {
            case "T": defined.insert(name)
            case "U": undefined.insert(name)
            default: break
            }
        }
        return (defined, undefined)
    }

    @Test func documentedPluginBuildsWithTheOneLiner() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = try directory.write("plugin.c", documentedPlugin(literal: "u"))
        let library = directory.path("plugin.so")
        let compiled = try run("cc", ["-shared", "-fPIC", "-I\(SourceTree.includeDirectory)", source, "-o", library])
        #expect(compiled.status == 0, "\(compiled.output)")
        let symbols = try dynamicSymbols(library)
        #expect(symbols.defined.isSuperset(of: entryPoints))
        #expect(symbols.undefined.isSuperset(of: [
            "WSManPluginReportContext", "WSManPluginReceiveResult", "WSManPluginOperationComplete",
            "WSManPluginGetOperationParameters",
        ]))
    }

    /// A Windows plug-in with L"..." literals builds unchanged with -fshort-wchar.
    @Test func windowsStyleLiteralsBuildWithShortWchar() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = try directory.write("plugin.c", documentedPlugin(literal: "L"))
        let library = directory.path("plugin.so")
        let compiled = try run("cc", [
            "-shared", "-fPIC", "-fshort-wchar", "-Wall", "-Werror", "-I\(SourceTree.includeDirectory)",
            source, "-o", library,
        ])
        #expect(compiled.status == 0, "\(compiled.output)")
        #expect(try dynamicSymbols(library).defined.isSuperset(of: entryPoints))
    }

    /// The same plug-in compiled as C++ (extern "C" guards, char16_t literals).
    @Test func pluginBuildsAsCPlusPlus() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = try directory.write("plugin.cpp", "extern \"C\" {\n" + documentedPlugin(literal: "u") + "\n}\n")
        let library = directory.path("plugin.so")
        let compiled = try run("c++", ["-shared", "-fPIC", "-I\(SourceTree.includeDirectory)", source, "-o", library])
        #expect(compiled.status == 0, "\(compiled.output)")
        #expect(try dynamicSymbols(library).defined.isSuperset(of: entryPoints))
    }

    /// Like Microsoft's header, <wsman.h> insists on an API version.
    @Test func aPluginMustChooseAnAPIVersion() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = try directory.write("plugin.c", "#include <wsman.h>\n")
        let compiled = try run("cc", ["-c", "-I\(SourceTree.includeDirectory)", source, "-o", directory.path("plugin.o")])
        #expect(compiled.status != 0)
        #expect(compiled.output.contains("WSMAN_API_VERSION_1_0 or WSMAN_API_VERSION_1_1"))
    }

    /// The template plug-in builds out of tree with nothing but the header.
    @Test func echoTemplateBuildsOutOfTree() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let library = directory.path("echo.so")
        let compiled = try run("cc", [
            "-shared", "-fPIC", "-I\(SourceTree.includeDirectory)", SourceTree.path("Sources/Plugins/echo/echo.c"),
            "-o", library,
        ])
        #expect(compiled.status == 0, "\(compiled.output)")
        let symbols = try dynamicSymbols(library)
        #expect(symbols.defined.isSuperset(of: entryPoints))
        #expect(symbols.undefined.contains("WSManPluginRegisterShutdownCallback"))
    }

    /// deploy/install-sdk.sh installs the header and the pkg-config file; a plug-in then
    /// builds with `$(pkg-config --cflags airlock-plugin)`.
    @Test func installedSDKWorksWithPkgConfig() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let prefix = directory.path("prefix")
        let installed = try run("sh", [SourceTree.path("deploy/install-sdk.sh"), prefix])
        #expect(installed.status == 0, "\(installed.output)")
        #expect(FileManager.default.fileExists(atPath: prefix + "/include/airlock/wsman.h"))
        let environment = ["PKG_CONFIG_PATH": prefix + "/lib/pkgconfig"]
        let flags = try run("pkg-config", ["--cflags", "airlock-plugin"], environment: environment)
        #expect(flags.status == 0, "\(flags.output)")
        #expect(flags.output.trimmingCharacters(in: .whitespacesAndNewlines) == "-I\(prefix)/include/airlock")

        let source = try directory.write("plugin.c", documentedPlugin(literal: "u"))
        let library = directory.path("plugin.so")
        let compiled = try run(
            "sh", ["-c", "cc -shared -fPIC $(pkg-config --cflags airlock-plugin) \"$0\" -o \"$1\"", source, library],
            environment: environment)
        #expect(compiled.status == 0, "\(compiled.output)")
        #expect(try dynamicSymbols(library).defined.isSuperset(of: entryPoints))
    }
}

// MARK: - Helpers

/// Paths in this source tree.
private enum SourceTree {
    /// The repository root: three levels above this file.
    static let root: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static var includeDirectory: String { path("Sources/CWSMan/include") }

    static func path(_ relative: String) -> String { root + "/" + relative }
}

/// A fresh directory under the system's temporary directory, removed by `remove()`.
private struct TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("airlock-abi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    func write(_ name: String, _ contents: String) throws -> String {
        let file = path(name)
        try contents.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Runs a program (found on PATH unless the name contains a slash) to completion;
/// returns its exit status and its stdout and stderr together.
private func run(
    _ program: String, _ arguments: [String], environment: [String: String] = [:]
) throws -> (status: Int32, output: String) {
    let process = Process()
    if program.contains("/") {
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
    } else {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [program] + arguments
    }
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
