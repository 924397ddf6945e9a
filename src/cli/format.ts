/** The table formatter lives in util (chaos reports use it too); the CLI's commands import it from here. */
export { table } from '../util/table';
