// The state database's records are the API's wire types (ZonewardAPI) made persistable here: whoever
// reads the store reads those types, so importing ZonewardState brings them along.
@_exported import ZonewardAPI
