"""The runnable models of the built-in libraries (TabZoo settings, XRD peak finders), probes and `modsnet run`.

What serving needs of the libraries' models lives here; how the libraries were generated lives in
`modsnet.offline.zoo`, which serving never imports.
"""
