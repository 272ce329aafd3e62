import ArgumentParser
import Foundation
import ZonewardAPI

/// The URLs of a comma-separated `--controller` value; exit 2 naming the bad one.
func controllerURLs(_ list: String, option: String = "--controller") throws -> [String] {
    do {
        return try ControllerClient.parse(list)
    } catch {
        printError("\(option): \(error.message)")
        throw ExitCode.badInput
    }
}

/// A client of the controllers in `list` (comma-separated); exit 2 naming a bad URL.
func controllerClient(
    _ list: String,
    token: String,
    option: String = "--controller",
    timeout: Duration = .seconds(60)
) throws -> ControllerClient {
    do {
        return try ControllerClient(urls: try controllerURLs(list, option: option), token: token, timeout: timeout)
    } catch let error as ControllerClientError {
        printError("\(option): \(error.message)")
        throw ExitCode.badInput
    }
}

/// Runs a call of the controller's API, turning its failure into a message and an exit code: 2 for a
/// refused token or bad input (4xx), 3 for a conflict (409: refused in the state it is in), 1 when no
/// controller answered or one failed (5xx).
func callController<T>(_ call: () async throws(ControllerClientError) -> T) async throws -> T {
    do {
        return try await call()
    } catch {
        switch error.kind {
        case .invalidURL:
            printError(error.description)
            throw ExitCode.badInput
        case .unreachable:
            printError("\(error.description) (use --db and --config to act on the state directly)")
            throw ExitCode.failure
        case .refused where error.status == 401:
            printError("controller refused the token (401): \(error.message)")
            throw ExitCode.badInput
        case .refused:
            printError("controller: \(error.message) (HTTP \(error.status ?? 0) from \(error.url))")
            switch error.status ?? 500 {
            case 409: throw ExitCode.guardRefused
            case ..<500: throw ExitCode.badInput
            default: throw ExitCode.failure
            }
        case .invalidAnswer:
            printError(error.description)
            throw ExitCode.failure
        }
    }
}
