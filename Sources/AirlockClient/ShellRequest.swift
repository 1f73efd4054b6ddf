import AirlockProtocol

/// What to ask for in ``AirlockConnection/createShell(_:)`` (`CREATE_SHELL`).
///
/// Name the plug-in, or give a resource URI and let `airlockd` find the plug-in (an exact
/// match or the longest registered prefix). Everything else is passed to the plug-in's
/// `WSManPluginShell` as `WSMAN_SHELL_STARTUP_INFO` and request details.
public struct ShellRequest: Sendable, Equatable {
    /// A registered plug-in's name; empty to find the plug-in by ``resourceURI``.
    public var plugin: String
    /// The resource URI; empty for the plug-in's first one.
    public var resourceURI: String
    /// The input streams the shell accepts.
    public var inputStreams: [String]
    /// The output streams the shell produces.
    public var outputStreams: [String]
    /// The shell's working directory, if the plug-in honours one.
    public var workingDirectory: String?
    /// Environment variables for the shell, in order.
    public var environment: [EnvironmentVariable]
    /// The shell's name (`WSMAN_SHELL_STARTUP_INFO_V11.name`).
    public var name: String?
    /// `WSMAN_OPTION`s for the plug-in.
    public var options: [WSManOption]
    /// Whether the plug-in must understand every option.
    public var optionsMustUnderstand: Bool
    /// The `inboundShellInformation` passed to `WSManPluginShell`.
    public var shellInformation: WSManData
    /// How long the shell may stay idle, or nil for the plug-in's default.
    public var idleTimeout: Duration?
    /// The deadline of the `CREATE_SHELL` operation, or nil for the plug-in's default.
    public var timeout: Duration?
    /// The requested locale (`WSMAN_PLUGIN_REQUEST.locale`).
    public var locale: String
    /// The requested data locale.
    public var dataLocale: String

    /// Creates a request; every parameter has the usual default.
    public init(
        plugin: String = "", resourceURI: String = "",
        inputStreams: [String] = ["stdin"], outputStreams: [String] = ["stdout", "stderr"],
        workingDirectory: String? = nil, environment: [EnvironmentVariable] = [], name: String? = nil,
        options: [WSManOption] = [], optionsMustUnderstand: Bool = false, shellInformation: WSManData = .none,
        idleTimeout: Duration? = nil, timeout: Duration? = nil, locale: String = "en-US", dataLocale: String = "en-US"
    ) {
        self.plugin = plugin
        self.resourceURI = resourceURI
        self.inputStreams = inputStreams
        self.outputStreams = outputStreams
        self.workingDirectory = workingDirectory
        self.environment = environment
        self.name = name
        self.options = options
        self.optionsMustUnderstand = optionsMustUnderstand
        self.shellInformation = shellInformation
        self.idleTimeout = idleTimeout
        self.timeout = timeout
        self.locale = locale
        self.dataLocale = dataLocale
    }
}
